"""Batch-level recipes: mixup (Zhang et al. 2018), cutmix (Yun et al. 2019) and label smoothing, via timm.

Mixup draws ``lam ~ Beta(a, a)`` and trains on ``lam * x_i + (1 - lam) * x_j`` with target
``lam * y_i + (1 - lam) * y_j``; cutmix pastes a box of area ``1 - lam`` from ``x_j`` into ``x_i``
and mixes the targets by the pasted area. Targets are one-hot vectors smoothed to
``(1 - eps) * onehot + eps / K`` (Szegedy et al. 2016). The training loop calls
``mixer = build_mixup(**bundle.mixup)`` once, then ``x, y_soft = mixer(x, y)`` on each training
batch (images ``[B, C, H, W]`` before the encoder, an even ``B``) and uses soft-target cross-entropy
(``timm.loss.SoftTargetCrossEntropy``). ``None`` means no mixing: use hard labels and
``CrossEntropyLoss(label_smoothing=...)``.
"""

from __future__ import annotations

from typing import Any


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
            raise ValueError(f"{key} must be >= 0, got {value}")
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if (mixup_alpha == 0 and cutmix_alpha == 0) or prob == 0:
        return None
    from timm.data import Mixup

    return Mixup(
        mixup_alpha=mixup_alpha,
        cutmix_alpha=cutmix_alpha,
        prob=prob,
        switch_prob=switch_prob,
        mode=mode,
        label_smoothing=label_smoothing,
        num_classes=num_classes,
    )
