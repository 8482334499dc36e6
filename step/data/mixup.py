"""Batch-level recipes: mixup (Zhang et al. 2018), cutmix (Yun et al. 2019) and label smoothing, via timm.

Mixup draws ``lam ~ Beta(a, a)`` and trains on ``lam * x_i + (1 - lam) * x_j`` with target
``lam * y_i + (1 - lam) * y_j``; cutmix pastes a box of area ``1 - lam`` from ``x_j`` into ``x_i``
and mixes the targets by the pasted area. Targets are one-hot vectors smoothed to
``(1 - eps) * onehot + eps / K`` (Szegedy et al. 2016).

The runner builds its batch transform here, once, through :func:`build_mixup` (called by
:func:`step.engine.recipe.build_recipe` from the ``dataset.mixup*`` / ``cutmix`` /
``label_smoothing`` keys); the training loop then calls ``x, y_soft = mixer(x, y, epoch)`` on every
training batch, before the encoder, and the recipe's criterion is soft-target cross-entropy. A
:class:`BatchMixer` mixes image batches ``[B, C, H, W]`` and event batches ``[B, T, C, H, W]`` (the
cutmix box is cut through every time bin and polarity), and stops mixing from ``off_epoch`` on
(inputs unchanged, targets still smoothed one-hot), as the released DVS recipes do. Sequence batches
``[B, L, C]`` take mixup alone: a blend of two pixel sequences is the sequence of the blended
images (reading pixels in any fixed order is linear), which is how STEP's released sequential
recipe mixes (images, before flattening); cutmix has no box in a sequence.
"""

from __future__ import annotations

from typing import Any

import torch

from step.errors import ConfigError

MODES = ("batch", "pair", "elem")


def build_mixup(
    num_classes: int,
    mixup_alpha: float = 0.0,
    cutmix_alpha: float = 0.0,
    label_smoothing: float = 0.0,
    prob: float = 1.0,
    switch_prob: float = 0.5,
    mode: str = "batch",
) -> Any:
    """A ``timm.data.Mixup`` for these settings, or ``None`` when both alphas are 0 (or ``prob`` is 0).

    ``prob`` is the chance a batch is mixed at all; ``switch_prob`` the chance it uses cutmix rather
    than mixup when both are on; ``mode`` is ``batch``, ``pair`` or ``elem`` (one lam per batch, pair
    or sample).
    """
    for key, value in (("mixup_alpha", mixup_alpha), ("cutmix_alpha", cutmix_alpha)):
        if value < 0:
            raise ConfigError(f"{key} must be >= 0, got {value}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    for key, value in (("prob", prob), ("switch_prob", switch_prob)):
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"mixup {key} must be in [0, 1], got {value}")
    if mode not in MODES:
        raise ConfigError(f"mixup mode must be one of {', '.join(MODES)}, got {mode!r}")
    if (mixup_alpha == 0 and cutmix_alpha == 0) or prob == 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=float(mixup_alpha),
        cutmix_alpha=float(cutmix_alpha),
        prob=float(prob),
        switch_prob=float(switch_prob),
        mode=str(mode),
        label_smoothing=float(label_smoothing),
        num_classes=int(num_classes),
    )


class BatchMixer:
    """``mixer(x, y, epoch) -> (x_mixed, soft targets)`` around a timm ``Mixup``.

    Image batches ``[B, C, H, W]`` and, for mixup alone, sequence batches ``[B, L, C]`` go to timm as they are; event batches ``[B, T, C, H, W]`` are
    viewed as ``[B, T*C, H, W]`` so that timm's cutmix box (the last two axes) is cut through every
    time bin and channel and mixup blends whole recordings. From epoch ``off_epoch`` on, nothing is
    mixed (timm's ``mixup_enabled = False``): the inputs pass unchanged and the targets are the
    smoothed one-hot vectors. The batch must be even (timm mixes sample i with sample B-1-i).
    """

    def __init__(self, mixup: Any, off_epoch: int | None = None):
        self.mixup = mixup
        self.off_epoch = off_epoch

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.mixup.mixup_enabled = self.off_epoch is None or epoch < self.off_epoch
        if x.dim() == 5:
            B, T, C, H, W = x.shape
            flat = x.contiguous().view(B, T * C, H, W)
            flat, target = self.mixup(flat, y)  # timm mixes in place
            return flat.view(B, T, C, H, W), target
        if x.dim() == 3 and self.mixup.cutmix_alpha == 0 and self.mixup.cutmix_minmax is None:
            return self.mixup(x, y)  # sequences [B, L, C]: mixup alone, an element-wise blend
        if x.dim() != 4:
            raise ConfigError(f"mixup/cutmix mix image [B, C, H, W] or event [B, T, C, H, W] batches (mixup alone also "
                              f"sequences [B, L, C]); this batch has shape {list(x.shape)}. Set dataset.mixup=0 and "
                              "dataset.cutmix=0.")
        return self.mixup(x, y)

    def describe(self) -> dict[str, Any]:
        m = self.mixup
        return {"mixup_alpha": m.mixup_alpha, "cutmix_alpha": m.cutmix_alpha, "prob": m.mix_prob,
                "switch_prob": m.switch_prob, "mode": m.mode, "off_epoch": self.off_epoch,
                "label_smoothing": m.label_smoothing}
