"""Image transforms for the real static datasets, with the published training recipes via timm.

A transform ends in ``[C, H, W]`` floats: intensities in [0, 1] by default, or standardised with
the dataset's mean and std when ``normalize`` is on, as every released image recipe does before
its direct encoding (``normalize`` needs the ``direct`` encoder: the rate, latency, phase and delta
encoders read [0, 1] intensities; :func:`step.config.validate.validate_config` refuses the pair).
``augment`` picks the recipe:

* ``none``: resize (if needed) and convert; the test transform of every small set.
* ``basic``: small images (CIFAR, MNIST): a random crop of ``crop_padding``-padded images (0: no
  crop; the released CIFAR recipes use none, their timm crop at scale and ratio 1 is the whole image)
  and a horizontal flip with probability ``hflip``; large images (ImageNet, ImageFolder): timm's
  random-resized crop of area ``crop_scale`` and the flip.
* ``randaugment``: ``basic`` plus RandAugment (Cubuk et al. 2020) from a timm config string such as
  ``rand-m9-n1-mstd0.4-inc1``. The prefix ``snn-`` (``snn-rand-m9-n1-mstd0.4-inc1``) draws from the
  five operations the Spikformer and SEMM CIFAR recipes keep (:data:`SNN_RAND_OPS`) instead of timm's
  full set, with timm's operations and magnitudes. Fill colour: the dataset mean; bicubic resampling.

``reprob`` > 0 appends timm's random erasing (Zhong et al. 2020) with mode ``remode`` (``const``
zeros, ``rand`` one normal colour per box, ``pixel`` normal noise per pixel) after the
normalisation, as the released loaders erase normalised tensors: ``const`` then paints the mean
colour (zero); on [0, 1] intensities it paints black. Mixup / cutmix / label smoothing act on
batches: see :mod:`step.data.mixup`. Test transforms of large images resize to ``img_size /
crop_pct`` and centre-crop ``img_size``.
"""

from __future__ import annotations

from typing import Callable, Sequence

AUGMENTS = ("none", "basic", "randaugment")
REMODES = ("const", "rand", "pixel")
#: the RandAugment operations of the Spikformer / SEMM CIFAR recipes (their ``aa_snn`` module keeps
#: these five of timm's list; the increasing and plain variants of these five are the same ops)
SNN_RAND_OPS = ("Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel")
SNN_PREFIX = "snn-"
#: the channel statistics used when a set has none of its own (ImageFolder trees): ImageNet's
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _check(augment: str, reprob: float, remode: str, randaugment: str) -> None:
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    if not 0.0 <= reprob <= 1.0:
        raise ValueError(f"reprob must be in [0, 1], got {reprob}")
    if remode not in REMODES:
        raise ValueError(f"remode must be one of {REMODES} (timm's random-erasing modes), got {remode!r}")
    if augment == "randaugment" and not str(randaugment).removeprefix(SNN_PREFIX).startswith("rand"):
        raise ValueError(f"randaugment must be a timm string such as 'rand-m9-n1-mstd0.4-inc1', optionally "
                         f"prefixed '{SNN_PREFIX}' for the SNN five-operation subset; got {randaugment!r}")


def fill_colour(mean: Sequence[float]) -> tuple[int, ...]:
    """The 8-bit fill colour of geometric operations: the dataset mean, as the released recipes use."""
    return tuple(min(255, round(255 * float(m))) for m in mean)


def randaugment_transform(config: str, img_size: int, mean: Sequence[float]) -> Callable:
    """timm's RandAugment for ``config``; ``snn-<config>`` restricts it to :data:`SNN_RAND_OPS`."""
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.transforms import str_to_pil_interp

    fill = fill_colour(mean)
    hparams = {
        "translate_const": int(img_size * 0.45),
        "img_mean": fill if len(fill) > 1 else fill[0],
        "interpolation": str_to_pil_interp("bicubic"),
    }
    if config.startswith(SNN_PREFIX):
        return rand_augment_transform(config[len(SNN_PREFIX):], hparams, transforms=list(SNN_RAND_OPS))
    return rand_augment_transform(config, hparams)


def _random_erasing(reprob: float, remode: str) -> list[Callable]:
    if reprob <= 0:
        return []
    from timm.data.random_erasing import RandomErasing

    return [RandomErasing(probability=reprob, mode=remode, device="cpu")]


def small_image_transform(
    train: bool,
    img_size: int,
    native_size: int,
    augment: str = "none",
    randaugment: str = "rand-m9-n1-mstd0.4-inc1",
    reprob: float = 0.0,
    hflip: float = 0.5,
    crop_padding: int = 4,
    normalize: bool = False,
    mean: Sequence[float] = (0.5,),
    std: Sequence[float] = (0.5,),
    remode: str = "const",
) -> Callable:
    """Transform for CIFAR / MNIST-like sets (PIL image -> ``[C, img_size, img_size]``)."""
    from torchvision import transforms as tv

    _check(augment, reprob, remode, randaugment)
    if int(crop_padding) < 0:
        raise ValueError(f"crop_padding must be >= 0 (0: no random crop), got {crop_padding}")
    ops: list[Callable] = []
    if img_size != native_size:
        ops.append(tv.Resize(img_size, interpolation=tv.InterpolationMode.BICUBIC))
    if train and augment != "none":
        if int(crop_padding) > 0:
            ops.append(tv.RandomCrop(img_size, padding=int(crop_padding)))
        if hflip > 0:
            ops.append(tv.RandomHorizontalFlip(hflip))
        if augment == "randaugment":
            ops.append(randaugment_transform(randaugment, img_size, mean))
    ops.append(tv.ToTensor())
    if normalize:
        ops.append(tv.Normalize(mean=list(mean), std=list(std)))
    if train:
        ops += _random_erasing(reprob, remode)
    return tv.Compose(ops)


def large_image_transform(
    train: bool,
    img_size: int,
    augment: str = "none",
    randaugment: str = "rand-m9-n1-mstd0.4-inc1",
    reprob: float = 0.0,
    hflip: float = 0.5,
    crop_pct: float = 0.875,
    crop_scale: Sequence[float] = (0.08, 1.0),
    normalize: bool = False,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    remode: str = "const",
) -> Callable:
    """Transform for ImageNet-like sets via timm's ``create_transform`` (identity normalisation
    unless ``normalize``)."""
    _check(augment, reprob, remode, randaugment)
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    scale = tuple(float(s) for s in crop_scale)
    if len(scale) != 2 or not 0.0 < scale[0] <= scale[1] <= 1.0:
        raise ValueError(f"crop_scale must be [min, max] area fractions in (0, 1], got {list(crop_scale)}")
    from timm.data import create_transform
    from torchvision import transforms as tv

    stats = {"mean": tuple(mean), "std": tuple(std)} if normalize else {"mean": (0.0,) * 3, "std": (1.0,) * 3}
    if not train or augment == "none":
        return create_transform(img_size, is_training=False, crop_pct=crop_pct, interpolation="bicubic", **stats)
    # timm's three stages (crop + flip | colour | tensor, normalise, erase); RandAugment is built here so
    # that its fill colour is the dataset mean whether or not the output is normalised
    crop_flip, _, finish = create_transform(
        img_size, is_training=True, scale=scale, hflip=hflip, color_jitter=None, interpolation="bicubic",
        re_prob=reprob, re_mode=remode, separate=True, **stats,
    )
    middle = [randaugment_transform(randaugment, img_size, mean)] if augment == "randaugment" else []
    return tv.Compose([*crop_flip.transforms, *middle, *finish.transforms])
