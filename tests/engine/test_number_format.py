"""The engine's number format (``TENFOLD_ENGINE_DTYPE``): ``auto`` measures the model's linear shapes in
float32 and 16-bit formats on this CPU and caches the choice per CPU; explicit formats are taken as given;
a bad value is refused; the choice is logged in ``tenfold serve``'s banner and exported on ``/metrics``.
Which format ``auto`` picks depends on the CPU (bfloat16 won on both CPUs this project has seen), so the
tests assert the rule, not the outcome."""

from __future__ import annotations

import json

import httpx
import pytest
import torch

from tenfold.engine import number_format
from tenfold.engine.async_engine import EngineOptions
from tenfold.engine.shapes import model_shape, read_config
from tests.conftest import start_server, stop_server

SHAPES = [(64, 192, 64), (64, 64, 64), (64, 512, 64), (64, 64, 256), (16, 4096, 64)]


def test_auto_measures_picks_by_the_rule_and_caches_per_cpu(tmp_path):
    cache = tmp_path / "engine-format.json"
    first = number_format.choose("auto", device="cpu", shapes=SHAPES, threads=1, cache_file=cache)
    assert not first.cached and first.cpu and set(first.seconds) >= {"float32", "bfloat16"}
    assert first.errors["bfloat16"] < number_format.TOLERANCE["bfloat16"]  # oneDNN's bfloat16 is accurate here
    speedup = first.seconds["float32"] / first.seconds["bfloat16"]
    assert (first.dtype == "bfloat16") == (speedup >= number_format.MARGIN), first
    assert first.dtype in first.reason and "float32" in first.reason
    stored = json.loads(cache.read_text())
    assert len(stored) == 1 and next(iter(stored.values()))["dtype"] == first.dtype
    again = number_format.choose("auto", device="cpu", shapes=SHAPES, threads=1, cache_file=cache)
    assert again.cached and again.dtype == first.dtype and again.seconds == first.seconds  # no flip between runs
    other = number_format.choose("auto", device="cpu", shapes=SHAPES[:2], threads=1, cache_file=cache)
    assert not other.cached and len(json.loads(cache.read_text())) == 2  # other shapes: measured anew


def test_a_16_bit_format_that_fails_the_accuracy_check_is_not_chosen(tmp_path, monkeypatch):
    monkeypatch.setitem(number_format.TOLERANCE, "bfloat16", 1e-9)  # nothing 16-bit is this exact
    monkeypatch.setattr(number_format, "MARGIN", 0.01)  # so speed alone would pick it
    choice = number_format.choose("auto", device="cpu", shapes=SHAPES, threads=1)
    assert choice.dtype == "float32" and "too large" in choice.reason


def test_explicit_formats_gpus_and_bad_values():
    assert number_format.choose("bfloat16", device="cpu", shapes=SHAPES, threads=1).dtype == "bfloat16"
    assert number_format.choose("float32", device="cpu", shapes=SHAPES, threads=1).torch_dtype == torch.float32
    assert number_format.choose("auto", device="cuda", shapes=SHAPES, threads=1).dtype == "bfloat16"
    with pytest.raises(ValueError, match="engine dtype"):
        number_format.choose("int8", device="cpu", shapes=SHAPES, threads=1)
    with pytest.raises(ValueError, match="dtype must be"):
        EngineOptions(dtype="fp8")


def test_the_model_shapes_measured_are_its_own(tiny_path):
    shape = model_shape(read_config(tiny_path))
    shapes = shape.linear_shapes(256, 64)
    assert shapes[0] == (256, (shape.heads + 2 * shape.kv_heads) * shape.head_dim, shape.hidden)
    assert shapes[-1] == (64, shape.vocab_size, shape.hidden)


def test_serve_shows_and_exports_the_chosen_format(tmp_path, model_cache):
    server = start_server(tmp_path / "home", model_cache, extra_env={"TENFOLD_ENGINE_DTYPE": "auto"})
    try:
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {server.api_key}"}).text
        line = next(x for x in metrics.splitlines() if x.startswith("tenfold_engine_number_format{"))
        chosen = line.split('dtype="')[1].split('"')[0]
        assert chosen in number_format.FORMATS and line.endswith(" 1.0")
        assert f"number format {chosen} (auto on " in server.output()
        cached = json.loads((tmp_path / "home" / "cache" / "engine-format.json").read_text())
        assert [v["dtype"] for v in cached.values()] == [chosen]
    finally:
        stop_server(server)
