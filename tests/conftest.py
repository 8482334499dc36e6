"""Test isolation: runs write into a temporary output/results/data root, never into the repo."""

from __future__ import annotations

import os

import pytest
import torch

os.environ["WANDB_MODE"] = "disabled"
os.environ.setdefault("WANDB_SILENT", "true")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def isolated_roots(tmp_path, monkeypatch):
    """Point STEP_OUT / STEP_RESULTS at a per-test folder; share one data cache per session."""
    monkeypatch.setenv("STEP_OUT", str(tmp_path / "outputs"))
    monkeypatch.setenv("STEP_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("STEP_DATA", os.environ.get("STEP_TEST_DATA", str(tmp_path.parent / "step-data")))
    yield tmp_path
