from pgml_engines.errors import EngineFailure, InvalidArgument, ModelNotFound, translate


def test_error_classes_carry_the_contracts_sqlstates_and_stdlib_bases() -> None:
    assert ModelNotFound("m", ["here"]).sqlstate == "42704"
    assert isinstance(ModelNotFound("m", []), LookupError)
    assert InvalidArgument("x").sqlstate == "22023"
    assert isinstance(InvalidArgument("x"), ValueError)
    assert EngineFailure("x").sqlstate == "XX000"


def test_library_errors_become_engine_errors_with_the_original_as_cause() -> None:
    original = ValueError("bad batch_size")
    translated = translate(original)
    assert isinstance(translated, InvalidArgument)
    assert translated.__cause__ is original
    assert isinstance(translate(OSError("disk")), EngineFailure)
    already = InvalidArgument("kept")
    assert translate(already) is already
