"""``step.engine.run(cfg)``: the one runner. Build, train, evaluate, measure, record.

Failure handling (what a week-long cluster job needs; docs/reliability.md):

- config, name, file-system, leaderboard, data and checkpoint problems raise before anything is
  written (:mod:`step.engine.preflight`);
- one process per run folder (:func:`step.engine.resume.hold`); a finished run is never resumed;
- every ``trainer.ckpt_every`` epochs and after the last epoch, ``<run_dir>/last.pt`` is written
  atomically (see :mod:`step.engine.checkpoint` for its contents and the ``trainer.resume`` rule);
- a finished run writes model, record, row, then ``ok`` in its sidecar (:mod:`step.engine.commit`);
- Ctrl-C or SIGTERM saves the state of the last finished epoch (kept in memory at every epoch end),
  writes the record with ``status=interrupted`` and its row, then re-raises; a resumed run repeats
  the interrupted epoch from that state, so it ends exactly as an uninterrupted run would on CPU;
- a NaN/inf loss writes ``status=diverged`` with the epoch and step and leaves ``last.pt`` alone;
  any other error (a full disk included) writes ``status=failed`` with the error;
- under ``torchrun`` only rank 0 writes checkpoints, records, rows and prints.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from step import native
from step.config.identity import config_hash
from step.config.names import check_config_names
from step.config.validate import validate_config
from step.engine import builders, checkpoint, distributed
from step.engine.allocator import configure_cpu_allocator, current as current_allocator
from step.engine.commit import RunFiles
from step.engine.epoch_log import bar_shown
from step.engine.loggers import RunLogger, make_logger
from step.engine.loop import evaluate, train_one_epoch
from step.engine.precision import autocast_factory, check_precision, make_scaler, maybe_compile, set_neuron_compilation
from step.engine.preflight import check_board, check_num_classes, check_output_paths
from step.engine.recording import components, previous_attempts
from step.engine.report import format_summary
from step.engine.resume import hold, resume_path
from step.engine.seed import resolve_device, seed_everything
from step.engine.signals import graceful_stop
from step.layers.fold import set_channels_last
from step.neurons.lif_op import device_implementation as neuron_implementation
from step.results.record import command_line, git_commit, package_versions


def _run_dir(cfg: DictConfig) -> Path:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.output_dir)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d/%H-%M-%S-%f")
    return Path(cfg.paths.output_root) / "runs" / f"{stamp}_{cfg.name}_{cfg.model.name}_s{cfg.seed}"


def measure_final(cfg, model, test_loader, task, metrics, **eval_kwargs):
    """The final evaluation on the whole test split, with energy counting when enabled."""
    from step.engine.time_order import time_order

    eval_kwargs = {**eval_kwargs, "time_order": time_order(cfg.trainer.get("eval_time_order", "normal"), cfg.seed)}
    if not cfg.energy.get("enabled", False):
        return evaluate(model, test_loader, task, metrics=metrics, desc="test", **eval_kwargs), {}, {}
    from step.energy import EnergyMeter
    from step.energy.audit import audit_model

    energy_cfg = OmegaConf.to_container(cfg.energy, resolve=True)
    meter = EnergyMeter(model, T=cfg.T, encoder_per_step=bool(cfg.energy.get("encoder_per_step", False)),
                        skip_zero_weights=bool(cfg.energy.get("skip_zero_weights", False)))
    with meter:
        result = evaluate(model, test_loader, task, metrics=metrics, desc="test+energy", **eval_kwargs)
    report = meter.report()
    energy_record = report.to_record(energy_cfg)
    energy_record["spike_driven"] = audit_model(energy_record["per_layer"], model)
    if hasattr(model, "backbone") and hasattr(model, "neck"):  # dense tasks: backbone / neck / head energy (pJ)
        from step.tasks.dense_model import split_energy_by_prefix

        energy_record["by_part_pj"] = split_energy_by_prefix(energy_record["per_layer"])
    return result, energy_record, report.columns(energy_cfg)


def _best(best: dict[str, Any] | None, name: str, metrics: dict[str, float], epoch: int) -> dict[str, Any] | None:
    value = metrics.get(name)
    if value is None or (best is not None and value <= best["value"]):
        return best
    return {"metric": name, "value": value, "epoch": epoch}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Train and evaluate the configured model; write record.json and one leaderboard row.

    Config, data and model problems raise before anything is written. Once training has started,
    a failure still writes the record and a row with its status, then re-raises.
    """
    validate_config(cfg)
    check_config_names(cfg)
    info = distributed.from_env()
    if info.is_main:
        check_output_paths(cfg)
        check_board(cfg.paths.leaderboard)
    device = resolve_device(cfg.trainer.device)
    check_precision(cfg.trainer.precision, device)
    device = distributed.setup(info, device)
    try:
        return _run(cfg, info, device)
    finally:
        distributed.teardown()


def _run(cfg: DictConfig, info: distributed.DistInfo, device: torch.device) -> dict[str, Any]:
    started = time.time()
    t = cfg.trainer
    generator = seed_everything(cfg.seed, t.deterministic)
    # before anything large is allocated: the setting applies to the allocations that follow
    allocator = configure_cpu_allocator(t.cpu_allocator) if device.type == "cpu" else current_allocator()
    resolved = OmegaConf.to_container(cfg, resolve=True)
    bundle = builders.build_data(cfg)
    check_num_classes(cfg, bundle.num_classes, bundle.name)
    encoder = builders.build_encoder(cfg).to(device)
    set_channels_last(t.channels_last)  # before the model is built: its conv weights take the layout
    model = builders.build_model(cfg, bundle).to(device)
    initialised = builders.init_weights(cfg, model)  # trainer.init_from: a fine-tune's starting weights
    task = builders.build_task(cfg)
    recipe = builders.build_recipe(cfg, bundle, task, model, info, resolved).to(device)  # mixup, criterion, TET, KD
    train_loader, test_loader = builders.build_loaders(cfg, bundle, generator, info, drop_last=recipe.mixer is not None)
    optimizer = builders.build_optimizer(cfg, model)
    scheduler = builders.build_scheduler(cfg, optimizer, builders.batches_per_epoch(cfg, train_loader))
    scaler = make_scaler(t.precision, device)
    metrics = task.make_metrics(bundle.num_classes).to(device)
    source = resume_path(cfg, resolved, info)
    run_dir = source.parent if source is not None else _run_dir(cfg)
    with hold(run_dir, info, cfg.paths.output_root):  # one process per run folder
        state = checkpoint.load(source, resolved) if source is not None else None
        if state is not None and state.get("world_size", 1) != info.world_size and info.is_main:
            print(f"step: warning: {source} was trained with {state.get('world_size')} processes, this run has "
                  f"{info.world_size}; the data order changes, so the result is not bit-identical.", flush=True)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        set_neuron_compilation(t.compile_neurons)
        train_net = maybe_compile(distributed.wrap(model, info, device, t.sync_bn), t.compile)
        eval_net = model if info.enabled else train_net  # DDP's forward would sync over uneven test shards
        record: dict[str, Any] = {
            "run_id": f"{run_dir.name}-{uuid.uuid4().hex[:6]}", "name": cfg.name, "status": "running",
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "command": command_line(),
            "git_commit": git_commit(), "versions": package_versions(),
            "device": str(device) if not info.enabled else f"{device.type} x{info.world_size}",
            "world_size": info.world_size, "precision": str(t.precision), "compile": bool(t.compile), "compile_neurons": bool(t.compile_neurons),
            "channels_last": bool(t.channels_last), "cpu_allocator": allocator, "kernels": native.implementations(),
            "loader": builders.loader_options(cfg), "neuron_kernel": neuron_implementation(device),
            "torch_threads": torch.get_num_threads(), "seed": cfg.seed, "T": cfg.T, "params": params,
            "components": components(cfg), "metric_name": task.metric_name, "metrics": {},
            "data": {"name": bundle.name, "modality": bundle.modality, "num_classes": bundle.num_classes,
                     "n_train": len(bundle.train), "n_test": len(bundle.test)},
            "init_from": initialised, "recipe": recipe.describe(),
            "schedule": {**scheduler.describe(), "lr": builders.effective_lr(cfg)},
            "config": resolved, "config_hash": config_hash(resolved), "reference": resolved.get("reference"),
            "record_path": str(run_dir / "record.json"), "output_root": str(cfg.paths.output_root),
            "leaderboard": str(cfg.paths.leaderboard), "history": [], "epochs_done": 0, "best": None,
        }
        files = RunFiles(cfg, record, started, run_dir, info.is_main)
        common = dict(encoder=encoder, modality=bundle.modality, device=device, progress=t.progress and info.is_main,
                      autocast=autocast_factory(t.precision, device))
        objects = dict(model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, generator=generator)
        if state is not None:
            record.update(history=state["history"], epochs_done=state["epoch"], best=state["best"],
                          resumed_from={"checkpoint": str(source), "epoch": state["epoch"]},
                          previous_attempts=previous_attempts(run_dir / "record.json") if info.is_main else [])
            if info.is_main:
                files.snapshot, files.saved_epoch = state, state["epoch"]
            checkpoint.restore(state, path=source, **objects)  # last: nothing after it may draw random numbers

        def take_snapshot(done: int) -> dict[str, Any]:
            return checkpoint.capture(**objects, epoch=done, best=record["best"], history=record["history"],
                                      config=resolved, world_size=info.world_size, run_id=record["run_id"])

        try:
            with graceful_stop():
                files.logger = make_logger(cfg, run_dir, resolved, record["run_id"], epochs=scheduler.epochs,
                                           metric_name=task.metric_name, console=not bar_shown(t.progress),
                                           ) if info.is_main else RunLogger()
                if state is not None:
                    files.logger.resume(record["history"])
                for epoch in range(record["epochs_done"], scheduler.epochs):  # trainer.epochs + sched.cooldown_epochs
                    train_loader.sampler.set_epoch(epoch)
                    train = train_one_epoch(train_net, train_loader, optimizer, task, epoch=epoch, metrics=metrics,
                                            grad_clip=t.grad_clip, max_batches=t.max_batches, scaler=scaler,
                                            recipe=recipe, schedule=scheduler, **common)
                    row = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "train_loss": train.loss,
                           **{f"train_{k}": v for k, v in train.metrics.items()}}
                    if epoch != scheduler.epochs - 1 and (epoch + 1) % t.eval_every == 0:
                        val = evaluate(eval_net, test_loader, task, metrics=metrics, max_batches=t.max_batches, **common)
                        row.update({"test_loss": val.loss, **{f"test_{k}": v for k, v in val.metrics.items()}})
                        record["best"] = _best(record["best"], task.metric_name, val.metrics, epoch)
                    scheduler.after_epoch(epoch)
                    record["history"].append(row)
                    record["epochs_done"] = epoch + 1
                    files.logger.log(row)
                    if info.is_main:
                        files.snapshot = take_snapshot(epoch + 1)
                        if t.ckpt_every and (epoch + 1) % t.ckpt_every == 0:
                            files.save_state()
                files.save_state()  # the trained state, before the final evaluation
                final, energy_record, energy_columns = measure_final(cfg, eval_net, test_loader, task, metrics, **common)
                record.update(status="ok", metrics=final.metrics, test_loss=final.loss,
                              energy=energy_record, energy_columns=energy_columns)
                files.commit(model, resolved)
        except BaseException as err:
            files.stop(err)
            raise files.reported(err)  # noqa: B904 - the original error is its cause
    if info.is_main:
        print(format_summary(record), flush=True)
    return record
