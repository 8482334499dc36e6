"""Test isolation: runs write into a temporary output/results/data root, never into the repo."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
# At most 2 threads (this machine's cores), unless OMP_NUM_THREADS says otherwise: make mutate sets 1,
# because its mutant processes are forked from one server and a fork after a multi-threaded OpenMP region
# hangs in the next one (a conv).
torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS") or max(1, min(2, os.cpu_count() or 1))))


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    """Point STEP_OUT / STEP_RESULTS at a per-test folder; share one data cache per session."""
    monkeypatch.setenv("STEP_OUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("STEP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STEP_DATA", os.environ.get("STEP_TEST_DATA", str(tmp_path.parent / "step-data")))
    yield tmp_path


@pytest.fixture(scope="session")
def trained_demo(tmp_path_factory):
    """``experiment=demo`` trained for one epoch by the runner (energy counted), rebuilt from its
    checkpoint: the record, the model in eval mode, its encoder and the test images."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from step.config import compose
    from step.engine import builders, run
    from step.engine.evaluate import load_checkpoint

    root = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STEP_OUT", str(root / "outputs"))
        mp.setenv("STEP_RESULTS", str(root / "results"))
        mp.setenv("STEP_DATA", os.environ.get("STEP_TEST_DATA", str(root.parent / "step-data")))
        record = run(compose(["experiment=demo", "trainer.epochs=1", "trainer.progress=false", "logger=none"]))
        ckpt = load_checkpoint(record["checkpoint"])
        cfg = OmegaConf.create(ckpt["config"])
        bundle = builders.build_data(cfg)
    model = builders.build_model(cfg, bundle)
    model.load_state_dict(ckpt["model"])
    images = torch.stack([bundle.test[i][0] for i in range(len(bundle.test))])
    labels = torch.tensor([int(bundle.test[i][1]) for i in range(len(bundle.test))])
    return SimpleNamespace(record=record, cfg=cfg, model=model.eval(), encoder=builders.build_encoder(cfg),
                           images=images, labels=labels, T=int(cfg.T))
