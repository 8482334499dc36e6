"""Evaluate a saved checkpoint on the test split of the config it was trained with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from step.engine import builders, checkpoint
from step.engine.run import measure_final
from step.engine.seed import resolve_device, seed_everything
from step.errors import CheckpointError


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


def evaluate_checkpoint(path: str | Path, energy: bool = True) -> dict[str, Any]:
    ckpt = load_checkpoint(path)
    cfg = OmegaConf.create(ckpt["config"])
    cfg.energy.enabled = bool(energy and cfg.energy.get("enabled", False))
    seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    bundle = builders.build_data(cfg)
    model = builders.build_model(cfg, bundle).to(device)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path} does not fit the model its config builds: {err}") from None
    encoder = builders.build_encoder(cfg).to(device)
    task = builders.build_task(cfg)
    _, test_loader = builders.build_loaders(cfg, bundle, torch.Generator().manual_seed(cfg.seed))
    metrics = task.make_metrics(bundle.num_classes).to(device)
    result, energy_record, columns = measure_final(
        cfg, model, test_loader, task, metrics, encoder=encoder, modality=bundle.modality,
        device=device, progress=False,
    )
    return {**{f"test_{k}": v for k, v in result.metrics.items()}, "test_loss": result.loss, **columns}
