"""Augmentations of event frames ``[T, P, H, W]``, as the released DVS recipes train with them.

The released Spikformer and QKFormer CIFAR10-DVS / DVS128 Gesture scripts augment each training
sample twice, on whole frame stacks (every time bin and polarity moved alike): a horizontal flip
with probability 0.5, then a TrivialAugment-style policy (Müller & Hutter 2021, "wide" magnitudes)
over six operations drawn uniformly:

=============  ==============================================  ==============================
operation      magnitude: one of 31 even steps, random sign    on the frames
=============  ==============================================  ==============================
Identity       none                                            unchanged
ShearX         -0.3 ... 0.3 (shear factor)                     affine shear along x
TranslateX     -5 ... 5 pixels (truncated to an integer)       affine shift along x
TranslateY     -5 ... 5 pixels                                 affine shift along y
Rotate         -30 ... 30 degrees                              rotation about the centre
Cutout         none                                            one square box, 0.1% to 11% of
                                                               the area, set to 0
=============  ==============================================  ==============================

Geometric operations resample with nearest neighbours and fill with 0 (no events), so counts stay
integers. This module re-implements that policy with torchvision's functional ops
(:func:`torchvision.transforms.functional.affine`, :class:`~torchvision.transforms.RandomErasing`);
random draws come from torch's global generator, which the runner seeds.

``EVENT_AUGMENTS``: ``none``, ``flip`` (the flip alone), ``flip-trivial`` (the released pair).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch.utils.data import Dataset

EVENT_AUGMENTS = ("none", "flip", "flip-trivial")
#: op -> (largest magnitude, whether a sign is drawn); 31 bins from -max to max (signed ops)
TRIVIAL_OPS: dict[str, tuple[float, bool]] = {
    "Identity": (0.0, False),
    "ShearX": (0.3, True),
    "TranslateX": (5.0, True),
    "TranslateY": (5.0, True),
    "Rotate": (30.0, True),
    "Cutout": (0.0, False),
}
NUM_BINS = 31


class EventFlip:
    """Mirror the whole stack left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        return frames.flip(-1) if torch.rand(1).item() < self.p else frames

    def __repr__(self) -> str:
        return f"EventFlip(p={self.p})"


def apply_op(frames: torch.Tensor, op: str, magnitude: float) -> torch.Tensor:
    """One policy operation on ``[..., H, W]`` frames (the same on every leading index)."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as F

    nearest = InterpolationMode.NEAREST
    if op == "Identity":
        return frames
    if op == "ShearX":
        return F.affine(frames, angle=0.0, translate=[0, 0], scale=1.0, shear=[math.degrees(magnitude), 0.0],
                        interpolation=nearest, fill=None)
    if op == "TranslateX":
        return F.affine(frames, angle=0.0, translate=[int(magnitude), 0], scale=1.0, shear=[0.0, 0.0],
                        interpolation=nearest, fill=None)
    if op == "TranslateY":
        return F.affine(frames, angle=0.0, translate=[0, int(magnitude)], scale=1.0, shear=[0.0, 0.0],
                        interpolation=nearest, fill=None)
    if op == "Rotate":
        return F.rotate(frames, magnitude, interpolation=nearest, fill=None)
    if op == "Cutout":
        from torchvision.transforms import RandomErasing

        return RandomErasing(p=1.0, scale=(0.001, 0.11), ratio=(1.0, 1.0), value=0)(frames)
    raise ValueError(f"unknown event augmentation {op!r}; one of {', '.join(TRIVIAL_OPS)}")


class EventTrivialAugment:
    """One operation of :data:`TRIVIAL_OPS` drawn uniformly, at a uniformly drawn magnitude bin and sign."""

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        names = list(TRIVIAL_OPS)
        op = names[int(torch.randint(len(names), (1,)).item())]
        largest, signed = TRIVIAL_OPS[op]
        magnitude = 0.0
        if largest:
            bins = torch.linspace(-largest, largest, NUM_BINS)
            magnitude = float(bins[int(torch.randint(NUM_BINS, (1,)).item())])
        if signed and torch.randint(2, (1,)).item():
            magnitude = -magnitude
        return apply_op(frames, op, magnitude)

    def __repr__(self) -> str:
        return f"EventTrivialAugment(ops={list(TRIVIAL_OPS)}, bins={NUM_BINS})"


class Chain:
    def __init__(self, *steps: Callable):
        self.steps = steps

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            frames = step(frames)
        return frames

    def __repr__(self) -> str:
        return f"Chain({', '.join(map(repr, self.steps))})"


def event_augmentation(name: str) -> Callable | None:
    """The training augmentation ``name`` (one of :data:`EVENT_AUGMENTS`), None for ``none``."""
    if name not in EVENT_AUGMENTS:
        raise ValueError(f"augment must be one of {EVENT_AUGMENTS} for event data, got {name!r}")
    if name == "none":
        return None
    if name == "flip":
        return EventFlip(0.5)
    return Chain(EventFlip(0.5), EventTrivialAugment())


class AugmentedFrames(Dataset):
    """``(augment(x), y)`` for each ``(x, y)`` of ``source`` (float frames ``[T, P, H, W]``)."""

    def __init__(self, source: Dataset, augment: Callable):
        self.source, self.augment = source, augment

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.source[i]
        return self.augment(x), y
