import pytest
import torch
from pgml_engines import InvalidArgument
from pgml_engines.devices import default_device, half_dtype, resolve_device


def test_default_device_is_cuda_when_present_else_cpu() -> None:
    expected = "cuda:" if torch.cuda.is_available() else "cpu"
    assert default_device().startswith(expected)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_no_device_and_cpu_share_one_cache_key_on_a_cpu_host() -> None:
    assert resolve_device(None) == resolve_device("cpu") == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has CUDA")
def test_asking_for_cuda_without_a_gpu_is_a_clear_argument_error() -> None:
    with pytest.raises(InvalidArgument, match="CUDA is not available"):
        resolve_device("cuda")


@pytest.mark.parametrize("bad", ["gpu-please", "", 3])
def test_unknown_device_is_an_argument_error(bad: object) -> None:
    with pytest.raises(InvalidArgument):
        resolve_device(bad)  # type: ignore[arg-type]


def test_half_precision_only_on_cuda_and_bf16_weights_keep_bf16() -> None:
    assert half_dtype("cpu", torch.float32) is None
    assert half_dtype("cuda:0", torch.float32) == torch.float16
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        assert half_dtype("cuda:0", torch.bfloat16) == torch.bfloat16
