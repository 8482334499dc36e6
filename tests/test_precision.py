"""Precision (32 / bf16 / fp16) and torch.compile: applied and recorded; CUDA paths need a GPU."""

from __future__ import annotations

import math

import pytest
import torch

from step.config import compose
from step.engine import run
from step.engine.precision import autocast_factory, make_scaler

TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=2",
        "trainer.batch_size=16", "trainer.eval_batch_size=32", "trainer.progress=false",
        "dataset.test_fraction=0.05", "energy.enabled=false", "logger=none", "trainer.epochs=1"]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")


def test_bf16_autocast_on_cpu_computes_linear_layers_in_bfloat16():
    layer, x = torch.nn.Linear(4, 3), torch.randn(2, 4)
    with autocast_factory("bf16", torch.device("cpu"))():
        assert layer(x).dtype == torch.bfloat16
    with autocast_factory("32", torch.device("cpu"))():
        assert layer(x).dtype == torch.float32
    assert make_scaler("fp16", torch.device("cpu")) is None and make_scaler("bf16", torch.device("cpu")) is None


def test_bf16_run_on_cpu_trains_and_records_its_precision(isolated_roots):
    record = run(compose([*TINY, "trainer.precision=bf16", "trainer.device=cpu"]))
    assert record["status"] == "ok" and record["precision"] == "bf16" and record["compile"] is False
    assert record["device"] == "cpu" and math.isfinite(record["history"][0]["train_loss"])


@pytest.mark.slow
def test_compiled_model_run_records_compile(isolated_roots):
    record = run(compose([*TINY, "trainer.compile=true", "trainer.device=cpu"]))
    assert record["status"] == "ok" and record["compile"] is True


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("precision", ["32", "bf16", "fp16"])
def test_cuda_run_in_each_precision(isolated_roots, precision):
    record = run(compose([*TINY, f"trainer.precision={precision}", "trainer.device=auto"]))
    assert record["device"].startswith("cuda") and record["precision"] == precision
    assert record["status"] == "ok" and math.isfinite(record["test_loss"])
    state = torch.load(record["state"], weights_only=True)
    assert (state["scaler"] is not None) == (precision == "fp16")  # GradScaler only for fp16


@pytest.mark.gpu
@needs_cuda
def test_cuda_resume_equals_uninterrupted_run_in_fp16(isolated_roots, monkeypatch):
    """fp16 + GradScaler: the scaler's scale and growth tracker travel in the checkpoint."""
    import importlib

    run_module = importlib.import_module("step.engine.run")
    extra = [*TINY, "trainer.precision=fp16", "trainer.epochs=2", "name=gpuresume"]
    full = run(compose(extra))
    real = run_module.train_one_epoch

    def stop_in_epoch_1(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", stop_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run(compose(extra))
    monkeypatch.setattr(run_module, "train_one_epoch", real)
    resumed = run(compose([*extra, "trainer.resume=auto"]))
    assert resumed["resumed_from"]["epoch"] == 1
    assert resumed["history"] == full["history"]  # deterministic=true: CUDA kernels chosen deterministically


def test_compile_neurons_flag_reaches_the_kernel_switch(isolated_roots, monkeypatch):
    """trainer.compile_neurons sets step.neurons.kernels' switch for the run (on, then off again)."""
    import step.neurons.kernels as kernels

    calls = []
    monkeypatch.setattr(kernels, "enable_compile", lambda on=True: calls.append(on))
    record = run(compose([*TINY, "trainer.compile_neurons=true"]))
    assert calls == [True] and record["compile_neurons"] is True
    record = run(compose([*TINY]))
    assert calls == [True, False] and record["compile_neurons"] is False


def test_channels_last_flag_reaches_the_conv_inputs(isolated_roots, monkeypatch):
    """trainer.channels_last decides the memory layout the patch-embedding convolutions read."""
    import importlib

    builders = importlib.import_module("step.engine.builders")
    real, seen = builders.build_model, []

    def build_and_watch(cfg, bundle):
        model = real(cfg, bundle)
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.in_channels > 1)
        conv.register_forward_pre_hook(lambda m, args: seen.append(
            (args[0].is_contiguous(), args[0].is_contiguous(memory_format=torch.channels_last))))
        return model

    monkeypatch.setattr(builders, "build_model", build_and_watch)
    record = run(compose([*TINY, "trainer.channels_last=false"]))
    assert record["channels_last"] is False and seen and all(s == (True, False) for s in seen)
    seen.clear()
    record = run(compose([*TINY]))  # the default
    assert record["channels_last"] is True and seen and all(s == (False, True) for s in seen)


def test_cpu_allocator_flag_reaches_mallopt(isolated_roots, monkeypatch):
    """trainer.cpu_allocator=keep asks glibc to keep freed memory (trim threshold up, no mmap);
    system restores glibc's defaults; the record says which is in effect."""
    from step.engine import allocator

    calls = []

    class FakeLibc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(allocator, "_libc", lambda: FakeLibc())
    monkeypatch.setitem(allocator._STATE, "mode", "system")
    record = run(compose([*TINY, "trainer.device=cpu"]))
    assert record["cpu_allocator"] == "keep" and calls == [(-1, 2**31 - 1), (-4, 0)]
    calls.clear()
    record = run(compose([*TINY, "trainer.device=cpu", "trainer.cpu_allocator=system"]))
    assert record["cpu_allocator"] == "system" and dict(calls) == {-1: 128 * 1024, -2: 0, -3: 128 * 1024, -4: 65536}
    assert set(record["kernels"]) == {"lif", "reduce"}


def test_keep_allocator_reuses_freed_memory_without_page_faults():
    """The effect itself, on the real C library: a 64 MB buffer allocated again after a free costs
    (almost) no page faults with ``keep``, and a fresh set of faults with glibc's defaults."""
    import resource

    from step.engine import allocator

    if allocator._libc() is None:
        pytest.skip("not glibc")

    def faults_of_two_allocations() -> tuple[int, int]:
        out = []
        for _ in range(2):
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            buf = torch.ones(16 * 2**20)  # 64 MB, every page written
            out.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
            del buf
        return out[0], out[1]

    try:
        assert allocator.configure_cpu_allocator("system") == "system"
        first, second = faults_of_two_allocations()
        if first < 16:
            pytest.skip(f"page faults are not observable here ({first} for 64 MB)")
        # 16384 pages of 4 KiB each time (mapped, then unmapped; fewer with transparent huge pages)
        assert second >= 0.5 * first
        assert allocator.configure_cpu_allocator("keep") == "keep"
        faults_of_two_allocations()
        _, again = faults_of_two_allocations()
        assert again <= 0.1 * first  # the freed block is reused
    finally:
        allocator.configure_cpu_allocator("keep")
    with pytest.raises(Exception, match="trainer.cpu_allocator='fast' is not one of keep, system"):
        allocator.configure_cpu_allocator("fast")
