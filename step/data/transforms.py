"""Image transforms for the real static datasets, with the published training recipes via timm.

Every transform ends in ``[C, H, W]`` floats in [0, 1]: nothing is normalised here (the encoder
must see raw intensities; normalisation is the model's business). ``augment`` picks the recipe:

* ``none``: resize (if needed) and convert; the test transform of every set.
* ``basic``: small images (CIFAR, MNIST): random crop with ``img_size // 8`` padding and horizontal
  flip with probability ``hflip``; large images (ImageNet, ImageFolder): timm's random-resized crop
  and flip.
* ``randaugment``: ``basic`` plus timm's RandAugment from a config string such as
  ``rand-m9-n1-mstd0.4-inc1`` (Cubuk et al. 2020; the string of the Spikformer / STEP CIFAR recipe).

``reprob`` > 0 appends timm's random erasing (Zhong et al. 2020) with zero fill (``mode='const'``), so
values stay in [0, 1]. Mixup / cutmix / label smoothing act on batches: see :mod:`step.data.mixup`.
"""

from __future__ import annotations

from typing import Callable


AUGMENTS = ("none", "basic", "randaugment")


def _check(augment: str, reprob: float) -> None:
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if not 0.0 <= reprob <= 1.0:
        raise ValueError(f"reprob must be in [0, 1], got {reprob}")


def _random_erasing(reprob: float) -> list[Callable]:
    if reprob <= 0:
        return []
    from timm.data.random_erasing import RandomErasing

    return [RandomErasing(probability=reprob, mode="const", device="cpu")]


def small_image_transform(
    train: bool,
    img_size: int,
    native_size: int,
    augment: str = "none",
    randaugment: str = "rand-m9-n1-mstd0.4-inc1",
    reprob: float = 0.0,
    hflip: float = 0.5,
) -> Callable:
    """Transform for CIFAR / MNIST-like sets (PIL image -> ``[C, img_size, img_size]`` in [0, 1])."""
    from torchvision import transforms as tv

    _check(augment, reprob)
    ops: list[Callable] = []
    if img_size != native_size:
        ops.append(tv.Resize(img_size, interpolation=tv.InterpolationMode.BICUBIC))
    if train and augment != "none":
        ops.append(tv.RandomCrop(img_size, padding=max(img_size // 8, 1)))
        if hflip > 0:
            ops.append(tv.RandomHorizontalFlip(hflip))
        if augment == "randaugment":
            from timm.data.auto_augment import rand_augment_transform

            ops.append(rand_augment_transform(randaugment, {"translate_const": int(img_size * 0.45)}))
    ops.append(tv.ToTensor())
    if train:
        ops += _random_erasing(reprob)
    return tv.Compose(ops)


def large_image_transform(
    train: bool,
    img_size: int,
    augment: str = "none",
    randaugment: str = "rand-m9-n1-mstd0.4-inc1",
    reprob: float = 0.0,
    hflip: float = 0.5,
    crop_pct: float = 0.875,
) -> Callable:
    """Transform for ImageNet-like sets via timm's ``create_transform``, with identity normalisation."""
    from torchvision import transforms as tv

    _check(augment, reprob)
    from timm.data import create_transform

    identity = {"mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}
    if not train or augment == "none":
        ops = create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation="bicubic", **identity)
        return ops
    return create_transform(
        img_size,
        is_training=True,
        hflip=hflip,
        color_jitter=0.0,
        auto_augment=randaugment if augment == "randaugment" else None,
        interpolation="bicubic",
        re_prob=reprob,
        re_mode="const",
        **identity,
    )
