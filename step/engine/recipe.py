"""The training recipe of a run: one object that the loop calls for its batch transform and criterion.

:func:`build_recipe` reads every recipe key of the config and decides, in this one place:

* ``dataset.mixup`` / ``dataset.cutmix`` > 0 (with ``mixup_prob``, ``mixup_switch_prob``,
  ``mixup_mode``, ``mixup_off_epoch``): each training batch is mixed by timm's ``Mixup`` (images and
  event frames, :class:`step.data.mixup.BatchMixer`), the targets become soft vectors and the
  criterion soft-target cross-entropy; from epoch ``mixup_off_epoch`` on nothing is mixed;
* ``dataset.label_smoothing``: the targets are smoothed (inside the mixed targets, or in the
  cross-entropy of hard labels); the task has no smoothing of its own;
* ``task.loss=tet`` (``tet_lambda``, ``tet_means``): the model returns per-timestep logits while
  training and the loss is TET (:class:`step.tasks.criterion.TETLoss`);
* ``kd=deit`` (``kd.teacher``, ``type``, ``alpha``, ``tau``): a frozen teacher
  (:mod:`step.engine.teacher`) and DeiT distillation around the base loss
  (:class:`step.tasks.criterion.DistillationLoss`).

Dense tasks (segmentation, detection) train with their task's own loss; asking them for mixing,
smoothing, TET or distillation is refused, as is cutmix on sequences (mixup blends them). Evaluation always uses the task's
plain loss on hard labels and the model's time-averaged output. ``describe()`` is the ``recipe``
block of ``record.json``: what was applied, read back from the objects built here.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import nn

from step.data.base import DataBundle
from step.errors import ConfigError


class Recipe:
    """``transform(x, y, epoch)`` -> (inputs, targets); ``loss(output, targets, x, x_t)``; ``logits(output)``."""

    def __init__(self, criterion: Callable, *, mixer=None, distill=None, teacher=None,
                 per_timestep: bool = False, info: dict[str, Any] | None = None):
        self.criterion, self.mixer, self.distill, self.teacher = criterion, mixer, distill, teacher
        self.per_timestep = per_timestep
        self.info = dict(info or {})

    def transform(self, x: torch.Tensor, y: Any, epoch: int) -> tuple[torch.Tensor, Any]:
        """The training batch as the model and the criterion see it (mixed, soft targets) or as it is."""
        return self.mixer(x, y, epoch) if self.mixer is not None else (x, y)

    def loss(self, output: Any, target: Any, x: torch.Tensor, x_time_major: torch.Tensor) -> torch.Tensor:
        if self.distill is not None:
            return self.distill(output, target, self.teacher(x, x_time_major))
        return self.criterion(output, target)

    def logits(self, output: Any) -> Any:
        """What the training metrics see: the model's output as evaluation would give it (per-timestep
        logits averaged over T, the class and distillation heads averaged)."""
        if isinstance(output, tuple):
            cls, dist = output
            return ((cls.mean(0) + dist.mean(0)) if self.per_timestep else (cls + dist)) / 2
        return output.mean(0) if self.per_timestep else output

    def to(self, device: torch.device) -> "Recipe":
        if self.teacher is not None:
            self.teacher.to(device)
        return self

    def describe(self) -> dict[str, Any]:
        return dict(self.info)


def _dataset_recipe(cfg: DictConfig) -> dict[str, Any]:
    d = cfg.dataset
    return {"mixup": float(d.get("mixup", 0.0)), "cutmix": float(d.get("cutmix", 0.0)),
            "label_smoothing": float(d.get("label_smoothing", 0.0)), "prob": float(d.get("mixup_prob", 1.0)),
            "switch_prob": float(d.get("mixup_switch_prob", 0.5)), "mode": str(d.get("mixup_mode", "batch")),
            "off_epoch": d.get("mixup_off_epoch", None)}


def set_per_timestep_logits(model: nn.Module, name: str) -> None:
    """Switch ``model`` to per-timestep logits ``[T, B, K]`` while training (TET), or refuse."""
    if not hasattr(model, "per_timestep_logits"):
        raise ConfigError(f"task.loss=tet needs per-timestep logits, and model '{name}' does not expose them; use "
                          "task.loss=ce, or a Spikformer, SDT, Meta-SpikeFormer, QKFormer or SEMM model.")
    model.per_timestep_logits = True


def build_recipe(cfg: DictConfig, bundle: DataBundle, task, model: nn.Module, *, per_rank_batch: int | None = None,
                 resolved: dict[str, Any] | None = None) -> Recipe:
    """The run's :class:`Recipe` (see the module docstring); raises :class:`ConfigError` for what cannot apply."""
    from step.tasks.classification import Classification
    from step.tasks.criterion import CrossEntropy, DistillationLoss, TETLoss

    r = _dataset_recipe(cfg)
    kd_name = str(cfg.kd.name)
    mixing = (r["mixup"] > 0 or r["cutmix"] > 0) and r["prob"] > 0
    info: dict[str, Any] = {"encoder": str(cfg.encoder.name) if bundle.modality != "event" else "events (frames)",
                            "normalize": ((resolved or {}).get("dataset") or {}).get("normalize")}
    distill_head = bool(getattr(model, "distill_head", False))
    if not isinstance(task, Classification):
        asked = [k for k, on in (("dataset.mixup/cutmix", mixing), ("dataset.label_smoothing", r["label_smoothing"] > 0),
                                 ("kd", kd_name != "none")) if on]
        if asked:
            raise ConfigError(f"task={cfg.task.name} trains with its own loss; {', '.join(asked)} apply to "
                              "classification only. Remove them for this task.")
        info.update(loss=f"{cfg.task.name} (task loss)", mixup=None, label_smoothing=None, tet=None, kd=None)
        return Recipe(task.loss, info=info)
    if mixing and bundle.modality == "sequence" and r["cutmix"] > 0:
        raise ConfigError(f"dataset.cutmix pastes a box of an image, and dataset '{bundle.name}' gives pixel sequences; "
                          "set dataset.cutmix=0 (dataset.mixup blends sequences as it would the images they are read from).")
    if mixing and bundle.modality not in ("image", "event", "sequence"):
        raise ConfigError(f"dataset.mixup / dataset.cutmix mix images, event frames or sequences; dataset "
                          f"'{bundle.name}' gives {bundle.modality}s. Set dataset.mixup=0 and dataset.cutmix=0.")
    off = r["off_epoch"]
    if off is not None and (not isinstance(off, int) or off < 0):
        raise ConfigError(f"dataset.mixup_off_epoch must be null or an epoch >= 0, got {off!r}.")

    mixer = None
    if mixing:  # ranges are checked by step.config.validate
        from step.data.mixup import BatchMixer, build_mixup

        if per_rank_batch is not None and per_rank_batch % 2:
            raise ConfigError(f"mixup/cutmix pair each sample with another of its batch and need an even batch per "
                              f"process; this run has {per_rank_batch}. Change trainer.batch_size.")
        mixer = BatchMixer(build_mixup(bundle.num_classes, mixup_alpha=r["mixup"], cutmix_alpha=r["cutmix"],
                                       label_smoothing=r["label_smoothing"], prob=r["prob"],
                                       switch_prob=r["switch_prob"], mode=r["mode"]), off_epoch=off)
    base = CrossEntropy(r["label_smoothing"], soft_targets=mixer is not None)
    info.update(mixup=mixer.describe() if mixer is not None else None, loss=base.describe()["loss"],
                label_smoothing=r["label_smoothing"])

    per_timestep = task.train_loss == "tet"
    criterion: nn.Module = base
    if per_timestep:
        set_per_timestep_logits(model, str(cfg.model.name))
        criterion = TETLoss(base, lamb=task.tet_lambda, means=task.tet_means)
        info["tet"] = {"lambda": criterion.lamb, "means": criterion.means, "base": info["loss"]}
        info["loss"] = "tet"
    else:
        info["tet"] = None

    distill = teacher = None
    if kd_name == "none":
        if distill_head:
            raise ConfigError("model.distill_head=true adds a head that learns from a teacher; set kd=deit with "
                              "kd.teacher, or model.distill_head=false.")
        info["kd"] = None
    else:
        distill, teacher = _distillation(cfg, bundle, criterion, DistillationLoss)
        info["kd"] = {**teacher.describe(), "type": distill.kind, "alpha": distill.alpha, "tau": distill.tau,
                      "student_head": "distillation head" if distill_head else "class head (one head)"}
    info["per_timestep_logits"] = per_timestep
    return Recipe(criterion, mixer=mixer, distill=distill, teacher=teacher, per_timestep=per_timestep, info=info)


def _distillation(cfg: DictConfig, bundle: DataBundle, base: nn.Module, loss_cls) -> tuple[Any, Any]:
    from step.engine.teacher import build_teacher

    kd = cfg.kd
    if str(kd.name) != "deit":
        raise ConfigError(f"kd must be none or deit, got '{kd.name}'.")
    kind, alpha, tau = str(kd.type), float(kd.alpha), kd.tau
    if kind not in ("hard", "soft"):
        raise ConfigError(f"kd.type must be hard (DeiT hard distillation) or soft (KL at temperature kd.tau), got '{kind}'.")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"kd.alpha must be in [0, 1], got {alpha}.")
    if kind == "hard" and tau is not None:
        raise ConfigError("kd.tau is the temperature of soft distillation; hard distillation has none. Set kd.tau=null "
                          "or kd.type=soft.")
    if kind == "soft" and (tau is None or float(tau) <= 0):
        raise ConfigError(f"kd.type=soft needs a temperature kd.tau > 0, got {tau}.")
    teacher = build_teacher(cfg, bundle)
    return loss_cls(base, teacher, kind=kind, alpha=alpha, tau=None if tau is None else float(tau)), teacher
