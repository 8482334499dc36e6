"""The learning-rate schedule of a run and the number of epochs it trains.

A timm scheduler (``create_scheduler_v2``) is stepped either once per epoch (``scheduler.step(epoch)``
at each epoch's end) or, with ``sched.per_iteration=true``, after every optimizer step
(``step_update(num_updates)``, timm's ``t_in_epochs=False``; warmup and cosine are then counted in
updates: ``epochs x updates_per_epoch``). The run trains the epoch count timm returns: the schedule's
``trainer.epochs`` plus ``sched.cooldown_epochs`` at ``min_lr``, as the released Spikformer / SDT
scripts do (``num_epochs`` from timm's factory). ``sched=none`` keeps the optimizer's lr and trains
``trainer.epochs``.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from step.errors import ConfigError


class Schedule:
    """The run's scheduler (or none), its epoch count and when it is stepped."""

    def __init__(self, scheduler: Any, epochs: int, per_iteration: bool, updates_per_epoch: int,
                 info: dict[str, Any] | None = None):
        self.scheduler, self.epochs = scheduler, int(epochs)
        self.per_iteration, self.updates_per_epoch = bool(per_iteration), int(updates_per_epoch)
        self.info = dict(info or {})

    def after_step(self, epoch: int, step: int) -> None:
        """Called after optimizer step ``step`` (0-based) of ``epoch``."""
        if self.scheduler is not None and self.per_iteration:
            self.scheduler.step_update(num_updates=epoch * self.updates_per_epoch + step + 1)

    def after_epoch(self, epoch: int) -> None:
        """Called when ``epoch`` (0-based) is done; the next epoch's lr is set."""
        if self.scheduler is not None:
            self.scheduler.step(epoch + 1)

    def state_dict(self) -> dict[str, Any] | None:
        return self.scheduler.state_dict() if self.scheduler is not None else None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state)

    def describe(self) -> dict[str, Any]:
        return {**self.info, "epochs": self.epochs, "per_iteration": self.per_iteration,
                "updates_per_epoch": self.updates_per_epoch}


def build_schedule(cfg: DictConfig, optimizer, updates_per_epoch: int) -> Schedule:
    """The :class:`Schedule` of ``cfg.sched`` for ``updates_per_epoch`` optimizer steps per epoch."""
    s, epochs = cfg.sched, int(cfg.trainer.epochs)
    per_iteration = bool(s.per_iteration)
    info = {"name": str(s.name), "trainer_epochs": epochs, "warmup_epochs": int(s.warmup_epochs),
            "cooldown_epochs": int(s.cooldown_epochs)}
    if s.name == "none":
        if s.warmup_epochs or s.cooldown_epochs or per_iteration:
            raise ConfigError("sched=none keeps the lr constant: it has no warmup, cooldown or per-iteration "
                              "steps. Choose sched=cosine or set them to 0 / false.")
        return Schedule(None, epochs, False, updates_per_epoch, info)
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, total = create_scheduler_v2(
            optimizer, sched=s.name, num_epochs=max(epochs, 1), warmup_epochs=s.warmup_epochs,
            warmup_lr=s.warmup_lr, min_lr=s.min_lr, cooldown_epochs=s.cooldown_epochs,
            step_on_epochs=not per_iteration, updates_per_epoch=max(updates_per_epoch, 1),
        )
    except (AssertionError, ValueError) as err:
        raise ConfigError(f"sched.name='{s.name}' is not a scheduler timm knows ({err}); try cosine, step or none.") from None
    if scheduler is None:
        raise ConfigError(f"sched.name='{s.name}' is not a scheduler timm knows; try cosine, step or none.")
    if epochs == 0:
        total = 0  # nothing to train: measure the untrained model
    return Schedule(scheduler, total, per_iteration, updates_per_epoch, {**info, "min_lr": float(s.min_lr),
                                                                            "warmup_lr": float(s.warmup_lr)})
