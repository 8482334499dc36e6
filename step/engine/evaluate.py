"""Evaluate a saved checkpoint on the test split of the config it was trained with."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from step.engine import builders, checkpoint
from step.engine.run import measure_final
from step.engine.seed import resolve_device, seed_everything
from step.errors import CheckpointError, ConfigError


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint dict (model.pt or last.pt), read weights-only, or one clear :class:`CheckpointError`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist.")
    ckpt = checkpoint.read(path)  # refuses anything but tensors and plain data, before it is built
    if not isinstance(ckpt, dict) or "model" not in ckpt or not isinstance(ckpt.get("config"), dict):
        raise CheckpointError(f"checkpoint {path} is not a STEP checkpoint (it has no 'model' and 'config' entries).")
    if ckpt.get("format") in (checkpoint.FORMAT, checkpoint.MODEL_FORMAT) and ckpt.get("version") != checkpoint.VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {ckpt.get('version')}, this STEP reads "
                              f"version {checkpoint.VERSION}; evaluate it with the STEP version that wrote it.")
    return ckpt


def checkpoint_config(ckpt: dict[str, Any], T: int | None = None) -> DictConfig:
    """The run config a checkpoint was trained with, at ``T`` time steps when given.

    The data root is ``STEP_DATA`` when set (a checkpoint moved to another machine), else the one it was
    trained with. An event dataset whose bins followed ``T`` gets ``T`` bins too.
    """
    cfg = OmegaConf.create(ckpt["config"])
    if os.environ.get("STEP_DATA"):
        cfg.paths.data_root = os.environ["STEP_DATA"]
    if T is not None and T != cfg.T:
        if T < 1:
            raise ConfigError(f"T must be >= 1, got {T}.")
        if cfg.dataset.get("timesteps") == cfg.T:
            cfg.dataset.timesteps = T
        cfg.T = T
    return cfg


def rebuild(path: str | Path, *, T: int | None = None, energy: bool | None = None, device: str | None = None):
    """The model a checkpoint's own config describes, with its weights loaded, and what feeds it.

    Returns ``(cfg, bundle, model, encoder)``: the config (at ``T`` when given; energy counting on when
    ``energy``, as the run had it when None), the data bundle, the model on the config's device (or
    ``device``) and the input encoder. One clear :class:`CheckpointError` when the weights do not fit.
    """
    ckpt = load_checkpoint(path)
    cfg = checkpoint_config(ckpt, T)
    cfg.energy.enabled = bool(cfg.energy.get("enabled", False) if energy is None else energy)
    seed_everything(cfg.seed)
    where = resolve_device(device or cfg.trainer.device)
    try:
        bundle = builders.build_data(cfg)
        model = builders.build_model(cfg, bundle).to(where)
    except ConfigError as err:  # a config key this version no longer reads (the checkpoint is older)
        raise CheckpointError(f"checkpoint {path} holds a config this STEP cannot build ({err}); it was written "
                              f"by {_writer(path)}: evaluate it with that version (git worktree add <dir> <commit>)."
                              ) from None
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the model its config builds: {err}") from None
    return cfg, bundle, model, builders.build_encoder(cfg).to(where)


def _writer(path: str | Path) -> str:
    """The commit that wrote a checkpoint, from the record beside it when there is one."""
    import json

    record = Path(path).parent / "record.json"
    try:
        commit = json.loads(record.read_text()).get("git_commit")
    except (OSError, ValueError, AttributeError):
        commit = None
    return f"commit {commit}" if commit else "an older STEP (no record.json beside it names the commit)"


def measure(path: str | Path, *, energy: bool | None = None, T: int | None = None) -> dict[str, Any]:
    """Rebuild the model a checkpoint's own config describes (any model, attention, neuron, encoder),
    load its weights and evaluate it on that config's test split, counting energy when ``energy`` (None:
    when the run did, ``energy.enabled``).

    Returns ``cfg``, ``result`` (:class:`~step.engine.loop.EpochResult`), ``energy`` (the record's
    energy block, empty without counting) and ``columns`` (the leaderboard's energy columns).
    """
    cfg, bundle, model, encoder = rebuild(path, T=T, energy=energy)
    device = next(model.parameters()).device
    task = builders.build_task(cfg)
    _, test_loader = builders.build_loaders(cfg, bundle, torch.Generator().manual_seed(cfg.seed))
    metrics = task.make_metrics(bundle.num_classes).to(device)
    result, energy_record, columns = measure_final(
        cfg, model, test_loader, task, metrics, encoder=encoder, modality=bundle.modality,
        device=device, progress=False,
    )
    return {"cfg": cfg, "result": result, "energy": energy_record, "columns": columns}


def evaluate_checkpoint(path: str | Path, energy: bool = True, T: int | None = None) -> dict[str, Any]:
    """``step-eval``: the test metrics (and energy columns) of a checkpoint, at its own T or at ``T``."""
    out = measure(path, energy=None if energy else False, T=T)
    result = out["result"]
    return {"T": int(out["cfg"].T), **{f"test_{k}": v for k, v in result.metrics.items()}, "test_loss": result.loss,
            **out["columns"]}
