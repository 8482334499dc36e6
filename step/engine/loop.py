"""One training loop and one evaluation loop for every task and modality."""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from step.engine.distributed import all_reduce_sum, any_rank
from step.errors import DivergedError


def to_time_major(x: torch.Tensor, modality: str, encoder: nn.Module) -> torch.Tensor:
    """A batch from the loader -> the model's time-major input ``[T, B, ...]``.

    Images and sequences go through the encoder; event frames ``[B, T, 2, H, W]`` already carry
    time and are only transposed.
    """
    if modality == "event":
        return x.transpose(0, 1).contiguous()
    return encoder(x)


@dataclass
class EpochResult:
    loss: float
    metrics: dict[str, float]
    n_samples: int
    extra: dict[str, Any] = field(default_factory=dict)


def _progress(iterable: Iterable, enabled: bool, desc: str, total: int | None):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: bars only on a terminal, so logs and CI output stay readable
    return tqdm(iterable, desc=desc, total=total, leave=False, dynamic_ncols=True, disable=None)


def _capped(loader, max_batches: int | None):
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            return
        yield batch


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    task,
    *,
    encoder: nn.Module,
    modality: str,
    device: torch.device,
    epoch: int,
    metrics,
    grad_clip: float | None = None,
    max_batches: int | None = None,
    progress: bool = True,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
    recipe=None,
    schedule=None,
) -> EpochResult:
    """Train for one pass over ``loader``; raises :class:`DivergedError` on a NaN/inf loss.

    ``recipe`` (:class:`step.engine.recipe.Recipe`) transforms each batch (mixup) and gives the loss
    (smoothing, TET, distillation); without one the task's loss trains on the batch as it is.
    ``schedule`` (:class:`step.engine.schedule.Schedule`) is told after every optimizer step.
    """
    model.train()
    metrics.reset()
    total_loss, n = 0.0, 0
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    bar = _progress(_capped(loader, max_batches), progress, f"epoch {epoch}", total)
    for step_idx, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), _move_target(task, y, device)
        x, target = recipe.transform(x, y, epoch) if recipe is not None else (x, y)
        with autocast():
            x_t = to_time_major(x, modality, encoder)
            output = model(x_t)
            loss = recipe.loss(output, target, x, x_t) if recipe is not None else task.loss(output, target)
        if any_rank(not bool(torch.isfinite(loss)), device):
            raise DivergedError(
                f"The loss became {'non-finite on another process' if torch.isfinite(loss) else loss.item()} "
                f"at epoch {epoch}, step {step_idx}. "
                "Lower optim.lr, set trainer.grad_clip, or check the data; the last good checkpoint is kept."
            )
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if schedule is not None:
            schedule.after_step(epoch, step_idx)
        bs = x.shape[0]
        total_loss += loss.item() * bs
        n += bs
        _update_metrics(task, metrics, recipe.logits(output) if recipe is not None else output, y)
        if progress and hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{total_loss / n:.4f}")
    total_loss, n = all_reduce_sum([total_loss, float(n)], device)
    return EpochResult(loss=total_loss / max(n, 1), metrics=_computed(metrics, task), n_samples=int(n))


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    task,
    *,
    encoder: nn.Module,
    modality: str,
    device: torch.device,
    metrics,
    max_batches: int | None = None,
    progress: bool = True,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    desc: str = "eval",
    time_order: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EpochResult:
    model.eval()
    metrics.reset()
    total_loss, n = 0.0, 0
    total = len(loader) if max_batches is None else min(len(loader), max_batches)
    for x, y in _progress(_capped(loader, max_batches), progress, desc, total):
        x, y = x.to(device, non_blocking=True), _move_target(task, y, device)
        with autocast():
            x_t = to_time_major(x, modality, encoder)
            output = model(time_order(x_t) if time_order is not None else x_t)  # step.engine.time_order probe
            loss = task.loss(output, y)
        bs = x.shape[0]
        total_loss += loss.item() * bs
        n += bs
        _update_metrics(task, metrics, output, y)
    total_loss, n = all_reduce_sum([total_loss, float(n)], device)
    return EpochResult(loss=total_loss / max(n, 1), metrics=_computed(metrics, task), n_samples=int(n))


def _move_target(task, y, device: torch.device):
    """The task's ``move_target`` (detection targets are lists of dicts), else ``y.to(device)``."""
    move = getattr(task, "move_target", None)
    return move(y, device) if move is not None else y.to(device, non_blocking=True)


def _update_metrics(task, metrics, output, y) -> None:
    """The task's ``update_metrics`` (it detaches; segmentation argmax, detection decoding), else ``metrics.update``."""
    hook = getattr(task, "update_metrics", None)
    if hook is not None:
        hook(metrics, output, y)
    else:
        metrics.update(output.detach().float(), y)


def _computed(metrics, task=None) -> dict[str, float]:
    if task is not None and getattr(task, "compute_metrics", None) is not None:
        return task.compute_metrics(metrics)
    out = {}
    for k, v in metrics.compute().items():
        value = float(v)
        out[k] = 100.0 * value if not math.isnan(value) else value  # percentages, as papers report
    return out
