"""Fast twins of behaviours that only slow tests checked (so ``make test`` now checks them too).

- the compiled neuron loop (the form ``torch.compile`` compiles) against the eager loop, and
  against a hand-worked case that fails if it resets from the wrong membrane;
- a real SIGTERM to a running ``step.train`` process (slow twin: tests/test_resume.py);
- one job of an ablation suite at CPU scale (slow twin: tests/test_sweeps.py);
- ``step-eval`` and ``step-list`` from their entry points.

Elsewhere in the fast suite: ``trainer.compile`` and ``trainer.compile_neurons`` runs
(tests/test_knob_effects_trainer.py), segmentation and detection end to end
(tests/test_knob_effects_task.py), the temporal probe (``eval_time_order``), ``split_seed`` and
energy on the whole test set (tests/test_knob_effects_{trainer,dataset,energy}.py), DDP's single
metrics.csv (tests/test_distributed.py). The joblib launcher stays in the slow suite only: its two
worker processes each import torch, timm and scikit-learn, 25-57 s on this shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from knob_runs import tiny_run
from step.neurons import kernels
from step.results.record import record_file

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["trainer.epochs=1", "trainer.max_batches=1", "model.depth=1", "model.dim=16", "model.heads=2", "T=2",
         "trainer.progress=false", "energy.enabled=false", "logger=none", "dataset.test_fraction=0.05"]


# ---- the compiled neuron loop ----------------------------------------------------------------
def _loops(x, **kw):
    v0 = torch.zeros_like(x[0])
    eager = kernels._forward_loop(x, v0.clone(), keep_h=True, **kw)
    pure = kernels._forward_loop_pure(x, v0.clone(), keep_h=True, **kw)
    return eager, pure


@pytest.mark.parametrize("reset", [0.0, None])  # hard reset to 0, soft reset (subtract the threshold)
def test_neuron_loop_by_hand_resets_from_the_charged_membrane(reset):
    """IF, threshold 1, input 0.6 at every step: H = 0.6, 1.2 (spike), then
    hard: V = 0 -> H = 0.6; soft: V = 1.2 - 1 = 0.2 -> H = 0.8. Resetting from the membrane
    before charging (V instead of H) would never accumulate and never fire."""
    x = torch.full((3, 1), 0.6)
    for spikes, v, h in _loops(x, tau=None, decay_input=False, th=1.0, reset=reset):
        assert spikes[:, 0].tolist() == [0.0, 1.0, 0.0]
        assert h[:, 0].tolist() == pytest.approx([0.6, 1.2, 0.6 if reset == 0.0 else 0.8])
        assert float(v[0]) == pytest.approx(0.6 if reset == 0.0 else 0.8)


@pytest.mark.parametrize("tau,decay_input,reset", [
    (None, False, 0.0), (None, False, None), (2.0, True, 0.0), (2.0, False, 0.0), (2.0, True, None),
    (3.0, True, -0.1),
])
def test_pure_loop_equals_the_eager_loop_on_a_few_hundred_elements(tau, decay_input, reset):
    x = torch.randn(4, 300, generator=torch.Generator().manual_seed(0)) * 2.5
    (s_e, v_e, h_e), (s_p, v_p, h_p) = _loops(x, tau=tau, decay_input=decay_input, th=1.0, reset=reset)
    assert 0.05 < float(s_e.mean()) < 0.95  # both firing and silent elements
    assert torch.equal(s_e, s_p) and torch.allclose(v_e, v_p, atol=1e-6) and torch.allclose(h_e, h_p, atol=1e-6)


def test_compiled_pure_loop_equals_the_eager_loop(monkeypatch):
    """``enable_compile`` routes the LIF through ``torch.compile(_forward_loop_pure)`` (Dynamo's
    graph with the eager backend here; Inductor in tests/test_neurons.py's slow test): spikes,
    membrane and input gradients equal the eager path's bit for bit."""
    from step.registry import NEURONS

    monkeypatch.setitem(kernels._COMPILE, "fns", {})
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="eager", **kw))
    x = torch.randn(4, 3, 100, generator=torch.Generator().manual_seed(1)) * 1.5
    n = NEURONS.build("lif", tau=2.0, surrogate="sigmoid", alpha=4.0, detach_reset=True)

    def forward_backward():
        xl = x.clone().requires_grad_()
        out = n(xl)
        out.sum().backward()
        return out.detach(), xl.grad

    eager = forward_backward()
    try:
        kernels.enable_compile(True)
        compiled = forward_backward()
        assert kernels._forward_loop_pure in kernels._COMPILE["fns"]
    finally:
        kernels.enable_compile(False)
        torch._dynamo.reset()
    assert torch.equal(eager[0], compiled[0]) and torch.equal(eager[1], compiled[1])


# ---- processes and the CLI -------------------------------------------------------------------
def _env(roots: Path) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "STEP_OUT": str(roots / "outputs"),
           "STEP_RESULTS": str(roots / "results"), "PYTHONPATH": str(ROOT)}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def test_sigterm_to_a_running_process_writes_an_interrupted_record(isolated_roots):
    """A real ``step.train`` process (2 batches per epoch, many epochs) gets SIGTERM once its first
    checkpoint exists; it leaves a record and a row with status ``interrupted`` and a resumable
    state. (The exit status is not asserted here: it is being changed to 143 elsewhere.)"""
    args = [*QUICK, "trainer.max_batches=2", "trainer.epochs=1000", "trainer.ckpt_every=1", "name=term"]
    proc = subprocess.Popen([sys.executable, "-m", "step.train", *args], cwd=isolated_roots, env=_env(isolated_roots),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a failsafe against a hang, not a timing assertion
    while not list((isolated_roots / "outputs").rglob("last.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended before its first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "trainer.resume=auto" in err
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    assert list(board["status"]) == ["interrupted"]
    record = json.loads(record_file(board["record_path"][0], isolated_roots / "outputs").read_text())  # rows hold paths relative to the output root
    assert record["status"] == "interrupted" and 1 <= record["epochs_done"] < 1000
    assert json.loads((Path(record["state"]).parent / "last.json").read_text())["status"] == "interrupted"


def test_one_cpu_suite_job_runs_in_process(isolated_roots):
    """The job ``T=2, seed=0`` of ``suite=timesteps scale=cpu``, composed as the sweep composes it."""
    record = tiny_run("suite=timesteps", "scale=cpu", "seed=0", "trainer.max_batches=1", "energy.enabled=false",
                      "dataset.test_fraction=0.05")
    row = pd.read_csv(isolated_roots / "results" / "leaderboard.csv").iloc[-1]
    assert (row["experiment"], row["dataset"], row["T"], row["status"]) == ("abl-timesteps", "digits-hard", 2, "ok")
    assert row["model"] == "spikformer-4-384[depth=1,dim=16,heads=2]"  # the label names what ran
    assert record["config"]["model"]["depth"] == 1 and record["config"]["trainer"]["device"] == "cpu"


def test_step_eval_reproduces_the_runs_test_metrics(isolated_roots, capsys):
    from step.cli import eval_main

    record = tiny_run("energy.enabled=false")
    capsys.readouterr()
    eval_main([record["checkpoint"], "--no-energy"])
    printed = dict(line.split(": ", 1) for line in capsys.readouterr().out.splitlines())
    assert float(printed["test_top1"]) == pytest.approx(record["metrics"]["top1"], abs=1e-9)
    assert float(printed["test_loss"]) == pytest.approx(record["test_loss"], rel=1e-6)
    with pytest.raises(SystemExit) as stop:
        eval_main([str(isolated_roots / "missing.pt")])
    assert stop.value.code != 0 and "missing.pt" in capsys.readouterr().err


def test_step_list_prints_every_registered_component(capsys):
    from step.cli import list_main
    from step.registry import ALL_REGISTRIES, ATTENTIONS

    list_main([])
    out = capsys.readouterr().out
    for kind, registry in ALL_REGISTRIES.items():
        assert f"{kind} ({len(registry)}):" in out
        assert all(f"  {name} " in out for name in registry.names())
    list_main(["attention"])  # one kind only
    only = capsys.readouterr().out
    assert only.startswith(f"attention ({len(ATTENTIONS)}):") and only.count("):\n") == 1
