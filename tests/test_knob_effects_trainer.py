"""Every ``trainer.*`` knob, shown by what a tiny real run does where the knob acts.

Each test watches the run (hooks on the model it builds, the optimiser it steps, the loaders it
reads) and fails when the runner ignores the knob. Knobs whose effect is proven elsewhere:
``channels_last`` and ``cpu_allocator`` (tests/test_precision.py: the conv inputs' memory layout,
glibc's mallopt calls and page faults), ``sync_bn`` (tests/test_distributed.py, CUDA only);
``device=cuda`` and ``precision=fp16`` run in the GPU tests (``-m gpu``).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from knob_runs import builders, cumulative_bn, on_model, record_inputs, run_module, step_log, tiny_run
from step.engine import checkpoint
from step.errors import ConfigError, DivergedError
from step.results.record import record_file


def test_epochs_batch_size_eval_batch_size_and_max_batches_shape_what_the_model_sees(monkeypatch):
    seen: list = []
    on_model(monkeypatch, lambda m: record_inputs(m, seen))
    record = tiny_run("trainer.epochs=2", "trainer.batch_size=8", "trainer.max_batches=3",
                      "trainer.eval_batch_size=20", "trainer.eval_every=100", "energy.enabled=false")
    train = [x.shape[1] for training, x in seen if training]
    test = [x.shape[1] for training, x in seen if not training]
    assert train == [8, 8, 8] * 2  # 2 epochs x 3 batches (max_batches) of 8 (batch_size); x is [T, B, ...]
    n_test = record["data"]["n_test"]
    assert n_test == 90 and test == [20, 20, 20, 20, 10]  # the final evaluation: the whole test split
    assert record["epochs_done"] == 2 and [r["epoch"] for r in record["history"]] == [0, 1]


def test_eval_every_decides_which_epochs_evaluate(monkeypatch):
    seen: list = []
    on_model(monkeypatch, lambda m: record_inputs(m, seen))
    record = tiny_run("trainer.epochs=4", "trainer.eval_every=2", "trainer.max_batches=1", "energy.enabled=false")
    evaluated = [r["epoch"] for r in record["history"] if "test_loss" in r]
    assert evaluated == [1]  # (epoch + 1) % 2 == 0, and never the last epoch (the final test replaces it)
    phases = [training for training, _ in seen]
    # train 0, train 1, eval (max_batches 1 of 32), train 2, train 3, final test (90 images / 32)
    assert phases == [True, True, False, True, True, False, False, False]


def test_precision_bf16_computes_the_layers_in_bfloat16(monkeypatch):
    dtypes: dict[str, set] = {"32": set(), "bf16": set()}
    current = {"p": "32"}

    def watch(model):
        for m in model.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
                m.register_forward_hook(lambda mod, args, out: dtypes[current["p"]].add((mod.training, out.dtype)))

    on_model(monkeypatch, watch)
    tiny_run("trainer.device=cpu", "energy.enabled=false")
    current["p"] = "bf16"
    record = tiny_run("trainer.device=cpu", "trainer.precision=bf16", "energy.enabled=false")
    assert dtypes["32"] == {(True, torch.float32), (False, torch.float32)}
    assert dtypes["bf16"] == {(True, torch.bfloat16), (False, torch.bfloat16)}  # training and evaluation
    assert record["precision"] == "bf16"


def test_device_is_where_the_run_computes(monkeypatch):
    seen: list = []
    on_model(monkeypatch, lambda m: record_inputs(m, seen))
    record = tiny_run("trainer.device=cpu", "energy.enabled=false")
    assert record["device"] == "cpu" and {x.device.type for _, x in seen} == {"cpu"}
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="trainer.device=cuda but no CUDA device"):
            tiny_run("trainer.device=cuda")


def test_grad_clip_bounds_the_gradient_norm_the_optimiser_receives(monkeypatch):
    log = step_log(monkeypatch)
    tiny_run("energy.enabled=false")
    free = [e["grad_norm"] for e in log]
    log.clear()
    tiny_run("trainer.grad_clip=0.01", "energy.enabled=false")
    clipped = [e["grad_norm"] for e in log]
    assert len(free) == len(clipped) == 2 and min(free) > 0.05  # unclipped norms are well above the bound
    assert all(n == pytest.approx(0.01, rel=1e-4) for n in clipped)  # clip_grad_norm_ scales to the bound


def test_deterministic_switches_torchs_deterministic_algorithms(monkeypatch):
    state: list = []
    on_model(monkeypatch, lambda m: m.register_forward_pre_hook(
        lambda mod, args: state.append(torch.are_deterministic_algorithms_enabled())))
    before = torch.are_deterministic_algorithms_enabled()
    try:
        tiny_run("trainer.deterministic=true", "energy.enabled=false")
        on, state[:] = set(state), []
        tiny_run("trainer.deterministic=false", "energy.enabled=false")
        off = set(state)
    finally:
        torch.use_deterministic_algorithms(before, warn_only=True)
    assert on == {True} and off == {False}


def test_progress_shows_bars_only_when_asked(monkeypatch):
    import tqdm.auto

    bars: list[str] = []
    real = tqdm.auto.tqdm

    def counting(*args, **kwargs):
        bars.append(kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(tqdm.auto, "tqdm", counting)
    tiny_run("trainer.progress=true", "trainer.epochs=2", "energy.enabled=false")
    assert bars == ["epoch 0", "eval", "epoch 1", "test"]
    bars.clear()
    tiny_run("trainer.progress=false", "trainer.epochs=2", "energy.enabled=false")
    assert bars == []


class _PidDataset(torch.utils.data.Dataset):
    """The training split, writing the id of the process that loads each item to a file."""

    def __init__(self, inner, path: Path):
        self.inner, self.path = inner, path

    def __len__(self):
        return len(self.inner)

    def __getitem__(self, i):
        with open(self.path, "a") as fh:
            fh.write(f"{os.getpid()}\n")
        return self.inner[i]


def test_num_workers_loads_the_data_in_worker_processes(monkeypatch, tmp_path):
    import dataclasses

    real = builders.build_data
    pids = tmp_path / "pids.txt"
    monkeypatch.setattr(builders, "build_data",
                        lambda cfg: dataclasses.replace(b := real(cfg), train=_PidDataset(b.train, pids)))
    tiny_run("trainer.num_workers=0", "energy.enabled=false")
    assert set(pids.read_text().split()) == {str(os.getpid())}
    pids.unlink()
    tiny_run("trainer.num_workers=1", "energy.enabled=false")
    loaded_by = set(pids.read_text().split())
    assert len(loaded_by) == 1 and str(os.getpid()) not in loaded_by  # one worker process, not this one


def test_ckpt_every_writes_checkpoints_during_training(monkeypatch):
    saves: list = []
    real = checkpoint.save
    monkeypatch.setattr(checkpoint, "save", lambda run_dir, state, status="running": (
        saves.append((state["epoch"], status)), real(run_dir, state, status))[1])
    tiny_run("trainer.epochs=3", "trainer.max_batches=1", "trainer.ckpt_every=2", "energy.enabled=false")
    # after epoch 2 of 3, then the trained state before the final evaluation; `ok` is said by last.json
    # only after model, record and row exist (issue 15's commit order), never by a checkpoint save
    assert saves == [(2, "running"), (3, "running")]
    (sidecar,) = (Path(os.environ["STEP_OUT"])).rglob("last.json")
    assert json.loads(sidecar.read_text())["status"] == "ok"
    sidecar.unlink()
    saves.clear()
    tiny_run("trainer.epochs=3", "trainer.max_batches=1", "trainer.ckpt_every=0", "energy.enabled=false")
    assert saves == [(3, "running")]  # 0: only the trained state at the end


def test_eval_time_order_reorders_time_in_the_final_evaluation_only(monkeypatch):
    """Latency coding puts each pixel's spike at its own timestep, so the order of time is visible.
    The epoch-0 evaluation sees the normal order; the final test sees it reversed or shuffled."""
    runs: dict[str, list] = {}

    def watch(model):
        runs[current] = []
        record_inputs(model, runs[current])

    on_model(monkeypatch, watch)
    common = ("encoder=latency", "T=4", "trainer.epochs=2", "trainer.max_batches=1", "energy.enabled=false")
    for current in ("normal", "reversed", "shuffled"):
        tiny_run(*common, f"trainer.eval_time_order={current}")
    evals = {k: [x for training, x in v if not training] for k, v in runs.items()}
    normal, reversed_, shuffled = evals["normal"], evals["reversed"], evals["shuffled"]
    assert len(normal) == len(reversed_) == len(shuffled) == 1 + 3  # epoch-0 eval (1 batch), final test (3)
    assert torch.equal(reversed_[0], normal[0]) and torch.equal(shuffled[0], normal[0])  # not during training
    assert not torch.equal(normal[1], normal[1].flip(0))
    for a, b, c in zip(normal[1:], reversed_[1:], shuffled[1:]):
        assert torch.equal(b, a.flip(0))
        perm = [next(s for s in range(4) if torch.equal(c[t], a[s])) for t in range(4)]
        assert sorted(perm) == [0, 1, 2, 3]  # every timestep kept once
    assert any(not torch.equal(c, a) for a, c in zip(normal[1:], shuffled[1:]))  # and the order moved


def _interrupted(monkeypatch, *extra):
    """A run stopped by Ctrl-C after its first epoch (the state of epoch 1 is saved)."""
    real = run_module.train_one_epoch

    def stop_in_epoch_1(*args, **kwargs):
        if kwargs["epoch"] == 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "train_one_epoch", stop_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        tiny_run(*extra)
    monkeypatch.setattr(run_module, "train_one_epoch", real)


def test_resume_auto_continues_the_newest_unfinished_run_never_a_diverged_one(monkeypatch, isolated_roots):
    """Three stopped runs of one config: interrupted (older), interrupted (newer), then diverged
    with a checkpoint (newest of all). ``auto`` continues the newer interrupted one; ``never``
    starts a fresh folder; a path continues that run."""
    same = ("trainer.epochs=3", "trainer.max_batches=1", "trainer.ckpt_every=1", "energy.enabled=false", "name=res")
    _interrupted(monkeypatch, *same)
    _interrupted(monkeypatch, *same)
    from step.engine.recipe import Recipe  # the training loss (evaluation uses the task's own)

    real_loss = Recipe.loss
    calls = {"n": 0}

    def nan_in_epoch_1(self, *args, **kwargs):
        calls["n"] += 1
        loss = real_loss(self, *args, **kwargs)
        return loss * float("nan") if calls["n"] == 2 else loss  # the batch of epoch 1 (epoch 0 has 1)

    monkeypatch.setattr(Recipe, "loss", nan_in_epoch_1)
    with pytest.raises(DivergedError):
        tiny_run(*same)
    monkeypatch.setattr(Recipe, "loss", real_loss)
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["interrupted", "interrupted", "diverged"]
    older, newer, diverged = (record_file(p, isolated_roots / "outputs").parent for p in board["record_path"])
    assert json.loads((diverged / "last.json").read_text())["status"] == "diverged" and (diverged / "last.pt").exists()

    resumed = tiny_run(*same, "trainer.resume=auto")
    assert resumed["resumed_from"] == {"checkpoint": str(newer / "last.pt"), "epoch": 1}
    assert Path(resumed["record_path"]).parent == newer and resumed["epochs_done"] == 3
    fresh = tiny_run(*same, "trainer.resume=never")
    assert "resumed_from" not in fresh and Path(fresh["record_path"]).parent not in (older, newer, diverged)
    by_path = tiny_run(*same, f"trainer.resume={older}")
    assert by_path["resumed_from"]["checkpoint"] == str(older / "last.pt") and by_path["history"] == resumed["history"]


def test_compile_trains_through_the_compiled_module(monkeypatch):
    """``trainer.compile=true`` trains and evaluates through ``torch.compile``'s module (Dynamo
    graphs with the eager backend here, so the test takes seconds, not minutes); the result equals
    the uncompiled run's bit for bit. The Inductor backend runs in the slow test."""
    from step.neurons import kernels

    monkeypatch.setitem(kernels._COMPILE, "fns", {})
    compiled: list = []
    real = torch.compile

    def eager_backend(model, **kwargs):
        out = real(model, backend="eager", **kwargs)
        compiled.append(out)
        return out

    monkeypatch.setattr(torch, "compile", eager_backend)
    plain = tiny_run("trainer.max_batches=1", "energy.enabled=false")
    assert compiled == []
    torch._dynamo.reset()
    record = tiny_run("trainer.max_batches=1", "energy.enabled=false", "trainer.compile=true")
    try:
        frames = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    finally:
        torch._dynamo.reset()
    assert len(compiled) == 1 and isinstance(compiled[0], torch._dynamo.eval_frame.OptimizedModule)
    assert frames >= 1 and record["compile"] is True
    assert record["history"] == plain["history"] and record["metrics"] == plain["metrics"]


def test_compile_neurons_runs_the_neuron_loops_compiled(monkeypatch):
    """``trainer.compile_neurons=true``: the IF/LIF loops go through ``torch.compile`` (eager
    backend here), and the run equals the uncompiled one bit for bit."""
    from step.neurons import kernels

    monkeypatch.setitem(kernels._COMPILE, "fns", {})
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    plain = tiny_run("trainer.max_batches=1", "energy.enabled=false")
    assert kernels._COMPILE["fns"] == {}
    try:
        record = tiny_run("trainer.max_batches=1", "energy.enabled=false", "trainer.compile_neurons=true")
        assert set(kernels._COMPILE["fns"]) == {kernels._forward_loop_pure, kernels._backward_loop}
    finally:
        kernels.enable_compile(False)
        torch._dynamo.reset()
    assert record["history"] == plain["history"] and record["metrics"] == plain["metrics"]


def test_cumulative_bn_helper_makes_the_tiny_model_fire(monkeypatch):
    """The energy tests rely on this: with cumulative BN statistics a 2-batch model fires."""
    on_model(monkeypatch, cumulative_bn)
    record = tiny_run()
    assert record["energy"]["totals"]["mean_firing_rate"] > 0.01
