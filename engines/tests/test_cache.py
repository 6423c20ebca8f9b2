"""The model cache with real torch modules standing in for models (their bytes are what the budget counts)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from pgml_engines.cache import ModelCache, estimate_nbytes


def _module(floats: int) -> torch.nn.Module:
    return torch.nn.Linear(floats, 1, bias=False)  # floats * 4 bytes of parameters


def test_size_counts_parameters_and_buffers_once() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(10, 10), torch.nn.BatchNorm1d(10))
    expected = sum(t.numel() * t.element_size() for t in (*module.parameters(), *module.buffers()))
    assert estimate_nbytes(module) == expected
    tied = torch.nn.Sequential(module[0], module[0])
    assert estimate_nbytes(tied) == estimate_nbytes(module[0])
    assert estimate_nbytes(object()) == 0


def test_concurrent_first_requests_load_once_and_share_the_object() -> None:
    cache: ModelCache[str, torch.nn.Module] = ModelCache(None)
    calls = 0
    gate = threading.Barrier(8)

    def loader() -> torch.nn.Module:
        nonlocal calls
        calls += 1
        time.sleep(0.05)  # widen the window in which the other threads ask; correctness does not depend on it
        return _module(4)

    def ask() -> torch.nn.Module:
        gate.wait()
        return cache.get("m", loader)

    with ThreadPoolExecutor(8) as pool:
        models = list(pool.map(lambda _: ask(), range(8)))
    assert calls == 1
    assert all(model is models[0] for model in models)
    assert cache.stats.loads == 1


def test_least_recently_used_model_goes_first_when_over_budget() -> None:
    evicted: list[str] = []
    cache: ModelCache[str, torch.nn.Module] = ModelCache(250, on_evict=evicted.append)
    cache.get("a", lambda: _module(25))  # 100 bytes each
    cache.get("b", lambda: _module(25))
    cache.get("a", lambda: _module(25))  # a is now the most recent
    cache.get("c", lambda: _module(25))
    assert evicted == ["b"]
    assert cache.keys() == ["a", "c"]
    assert cache.stats.bytes == 200


def test_a_model_bigger_than_the_budget_is_kept_alone() -> None:
    cache: ModelCache[str, torch.nn.Module] = ModelCache(10)
    cache.get("small", lambda: _module(1))
    big = cache.get("big", lambda: _module(100))
    assert cache.keys() == ["big"]
    assert cache.peek("big") is big


def test_a_failed_load_is_not_cached_and_is_retried() -> None:
    cache: ModelCache[str, torch.nn.Module] = ModelCache(None)

    def broken() -> torch.nn.Module:
        raise OSError("weights missing")

    with pytest.raises(OSError):
        cache.get("m", broken)
    assert cache.keys() == []
    assert cache.get("m", lambda: _module(1)) is cache.peek("m")
