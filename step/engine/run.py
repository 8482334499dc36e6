"""``step.engine.run(cfg)``: the one runner. Build, train, evaluate, measure, record."""

from __future__ import annotations

import contextlib
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from step.config.validate import group_params, validate_config
from step.engine import builders
from step.engine.loggers import make_logger
from step.engine.loop import evaluate, train_one_epoch
from step.engine.report import format_summary
from step.engine.seed import resolve_device, seed_everything
from step.errors import DivergedError
from step.results.leaderboard import append_row
from step.results.record import command_line, git_commit, package_versions, write_record


def _run_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d/%H-%M-%S-%f")
    return Path(cfg.paths.output_root) / "runs" / f"{stamp}_{cfg.name}_{cfg.model.name}_s{cfg.seed}"


def _autocast(precision: str, device: torch.device):
    if str(precision) == "32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if str(precision) == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def _components(cfg: DictConfig) -> dict[str, Any]:
    return {
        "model": cfg.model.name, "attention": cfg.attention.name, "neuron": cfg.neuron.name,
        "surrogate": cfg.surrogate.name, "alpha": cfg.surrogate.get("alpha"), "encoder": cfg.encoder.name,
        "backend": cfg.backend.name, "dataset": cfg.dataset.name, "task": cfg.task.name,
    }


def _row(record: dict[str, Any]) -> dict[str, Any]:
    comp = record["components"]
    return {
        "run_id": record["run_id"], "time": record["finished_at"], "git_commit": record["git_commit"],
        "source": "run", "experiment": record["name"], "task": comp["task"], "dataset": comp["dataset"],
        "model": comp["model"], "attention": comp["attention"], "neuron": comp["neuron"],
        "surrogate": comp["surrogate"], "encoder": comp["encoder"], "backend": comp["backend"],
        "T": record["T"], "seed": record["seed"], "params": record.get("params"),
        "metric_name": record.get("metric_name"), "metric": record.get("metrics", {}).get(record.get("metric_name") or ""),
        **record.get("energy_columns", {}),
        "epochs": record.get("epochs_done"), "wall_time_s": round(record["wall_time_s"], 2),
        "device": record.get("device"), "status": record["status"], "error": record.get("error", ""),
        "record_path": record["record_path"], "command": record["command"],
    }


def _finish(cfg: DictConfig, record: dict[str, Any], started: float, logger=None) -> dict[str, Any]:
    record["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    record["wall_time_s"] = time.time() - started
    row = _row(record)
    record["leaderboard_row"] = row
    write_record(record["record_path"], record)
    append_row(cfg.paths.leaderboard, row)
    if logger is not None:
        with contextlib.suppress(Exception):
            logger.finish(record)
    return record


def measure_final(cfg, model, test_loader, task, metrics, **eval_kwargs):
    """The final evaluation on the whole test split, with energy counting when enabled."""
    if not cfg.energy.get("enabled", False):
        return evaluate(model, test_loader, task, metrics=metrics, desc="test", **eval_kwargs), {}, {}
    from step.energy import EnergyMeter

    energy_cfg = OmegaConf.to_container(cfg.energy, resolve=True)
    meter = EnergyMeter(model, T=cfg.T, encoder_per_step=bool(cfg.energy.get("encoder_per_step", False)))
    with meter:
        result = evaluate(model, test_loader, task, metrics=metrics, desc="test+energy", **eval_kwargs)
    report = meter.report()
    return result, report.to_record(energy_cfg), report.columns(energy_cfg)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and evaluate the configured model; write record.json and one leaderboard row.

    Config, data and model problems raise before anything is written. Once training has started,
    a failure still writes the record and a row with its status, then re-raises.
    """
    validate_config(cfg)
    started = time.time()
    t = cfg.trainer
    generator = seed_everything(cfg.seed, t.deterministic)
    device = resolve_device(t.device)
    bundle = builders.build_data(cfg)
    encoder = builders.build_encoder(cfg).to(device)
    model = builders.build_model(cfg, bundle).to(device)
    task = builders.build_task(cfg)
    train_loader, test_loader = builders.build_loaders(cfg, bundle, generator)
    optimizer = builders.build_optimizer(cfg, model)
    scheduler = builders.build_scheduler(cfg, optimizer)
    metrics = task.make_metrics(bundle.num_classes).to(device)
    run_dir = _run_dir(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    net = torch.compile(model) if t.compile else model
    resolved = OmegaConf.to_container(cfg, resolve=True)
    record: dict[str, Any] = {
        "run_id": f"{run_dir.name}-{uuid.uuid4().hex[:6]}", "name": cfg.name, "status": "running",
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command_line(),
        "git_commit": git_commit(), "versions": package_versions(), "device": str(device),
        "torch_threads": torch.get_num_threads(), "seed": cfg.seed, "T": cfg.T, "params": params,
        "components": _components(cfg), "metric_name": task.metric_name, "metrics": {},
        "data": {"name": bundle.name, "modality": bundle.modality, "num_classes": bundle.num_classes,
                 "n_train": len(bundle.train), "n_test": len(bundle.test)},
        "config": resolved, "reference": resolved.get("reference"),
        "record_path": str(run_dir / "record.json"), "history": [], "epochs_done": 0,
    }
    logger = make_logger(cfg.logger.name, run_dir, cfg.logger.project, cfg.logger.mode, resolved, record["run_id"])
    common = dict(encoder=encoder, modality=bundle.modality, device=device, progress=t.progress,
                  autocast=_autocast(t.precision, device))
    scaler = torch.amp.GradScaler("cuda") if str(t.precision) == "fp16" and device.type == "cuda" else None
    try:
        for epoch in range(t.epochs):
            train = train_one_epoch(net, train_loader, optimizer, task, epoch=epoch, metrics=metrics,
                                    grad_clip=t.grad_clip, max_batches=t.max_batches, scaler=scaler, **common)
            row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train.loss,
                   **{f"train_{k}": v for k, v in train.metrics.items()}}
            last = epoch == t.epochs - 1
            if not last and (epoch + 1) % t.eval_every == 0:
                val = evaluate(net, test_loader, task, metrics=metrics, max_batches=t.max_batches, **common)
                row.update({"test_loss": val.loss, **{f"test_{k}": v for k, v in val.metrics.items()}})
            if scheduler is not None:
                scheduler.step(epoch + 1)
            record["history"].append(row)
            record["epochs_done"] = epoch + 1
            logger.log(row)
        final, energy_record, energy_columns = measure_final(cfg, net, test_loader, task, metrics, **common)
        record.update(status="ok", metrics=final.metrics, test_loss=final.loss,
                      energy=energy_record, energy_columns=energy_columns)
    except DivergedError as err:
        record.update(status="diverged", error=str(err))
        _finish(cfg, record, started, logger)
        raise
    except KeyboardInterrupt:
        record.update(status="interrupted", error="interrupted by the user or a signal")
        _finish(cfg, record, started, logger)
        raise
    except Exception as err:
        record.update(status="failed", error=f"{type(err).__name__}: {err}")
        _finish(cfg, record, started, logger)
        raise
    torch.save({"model": model.state_dict(), "config": resolved, "epoch": record["epochs_done"]}, run_dir / "model.pt")
    record["checkpoint"] = str(run_dir / "model.pt")
    _finish(cfg, record, started, logger)
    print(format_summary(record), flush=True)
    return record
