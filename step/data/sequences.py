"""Sequential benchmarks: images read as sequences, and MNIST-1D.

A sequence sample is ``x`` = ``[L, C]`` (one position per row). Images ``[C, H, W]`` are read

* ``pixel`` by pixel in raster order: ``L = H * W`` positions of ``C`` values (sMNIST: 784 x 1,
  sCIFAR-10: 1024 x 3), optionally in a fixed random order (psMNIST, Le, Jaitly & Hinton 2015);
* ``row`` by row: ``L = H`` positions of ``W * C`` values.

The permutation is drawn once from ``permutation_seed`` with torch's CPU generator and never stored
on disk, so it is the same on every machine (STEP re-read it from ``./data/permutation.pt``).

Registered here: ``digits-seq`` (embedded), ``mnist1d`` (embedded, generated locally),
``smnist``, ``psmnist`` and ``scifar10`` (from the real MNIST / CIFAR-10 under the data root).
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from step.data.base import DataBundle
from step.data.digits import digits
from step.data.paths import atomic_save_npz, load_npz_cache
from step.registry import DATASETS

SEQ_MODES = ("pixel", "row")


def fixed_permutation(length: int, seed: int) -> torch.Tensor:
    """A permutation of ``range(length)`` that depends only on ``seed``."""
    return torch.randperm(length, generator=torch.Generator().manual_seed(int(seed)))


def image_to_sequence(x: torch.Tensor, mode: str, permutation: torch.Tensor | None = None) -> torch.Tensor:
    """``[..., C, H, W]`` -> ``[..., L, C']`` read ``pixel`` by pixel or ``row`` by row."""
    if mode == "pixel":
        seq = x.flatten(-2).transpose(-1, -2)  # [..., H*W, C]
    elif mode == "row":
        seq = x.permute(*range(x.dim() - 3), -2, -1, -3).flatten(-2)  # [..., H, W*C]
    else:
        raise ValueError(f"sequence mode must be one of {SEQ_MODES}, got {mode!r}")
    if permutation is not None:
        seq = seq[..., permutation, :]
    return seq.contiguous()


class SequenceView(Dataset):
    """An image dataset seen as sequences (the reading is done per sample, images stay as stored)."""

    def __init__(self, images: Dataset, mode: str, permutation: torch.Tensor | None = None):
        self.images, self.mode, self.permutation = images, mode, permutation

    def __len__(self) -> int:
        return len(self.images)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        x, y = self.images[i]
        return image_to_sequence(x, self.mode, self.permutation), y


def sequence_bundle(name: str, images: DataBundle, mode: str, permute: bool, permutation_seed: int) -> DataBundle:
    """Turn an image bundle into a sequence bundle (same labels, ``x`` = ``[L, C]``)."""
    if mode not in SEQ_MODES:
        raise ValueError(f"{name}: mode must be one of {SEQ_MODES}, got {mode!r}")
    x0, _ = images.test[0]
    C, H, W = x0.shape
    L, width = (H * W, C) if mode == "pixel" else (H, W * C)
    perm = fixed_permutation(L, permutation_seed) if permute else None
    return DataBundle(
        name=name,
        train=SequenceView(images.train, mode, perm),
        test=SequenceView(images.test, mode, perm),
        num_classes=images.num_classes,
        in_chans=width,
        img_size=None,
        modality="sequence",
        seq_len=L,
        info={**images.info, "source": images.name, "mode": mode, "permuted": permute},
    )


@DATASETS.register("digits-seq", paper="sMNIST / psMNIST protocol (Le et al. 2015) on scikit-learn digits")
def digits_seq(
    root: str | None = None,
    img_size: int = 16,
    mode: str = "pixel",
    permute: bool = False,
    permutation_seed: int = 0,
    test_fraction: float = 0.2,
    split_seed: int = 0,
) -> DataBundle:
    """Embedded digits read as sequences: ``pixel`` -> ``[img_size**2, 1]``, ``row`` -> ``[img_size, img_size]``."""
    images = digits(root=root, img_size=img_size, test_fraction=test_fraction, split_seed=split_seed)
    return sequence_bundle("digits-seq", images, mode, permute, permutation_seed)


def _generate_mnist1d() -> dict[str, np.ndarray]:
    """MNIST-1D from the ``mnist1d`` package's templates with its default arguments (seed 42).

    The generator seeds the global ``random`` / ``numpy`` generators; their states are restored
    afterwards so that generating the data does not change the run's random stream.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {k: np.asarray(data[k]) for k in ("x", "y", "x_test", "y_test")}


@DATASETS.register("mnist1d", paper="Greydanus 2020, Scaling down deep learning (MNIST-1D)")
def mnist1d(root: str | None = None) -> DataBundle:
    """MNIST-1D: 4,000 train / 1,000 test signals of length 40 (``x`` = ``[40, 1]``, standardised), 10 classes.

    Generated locally (never downloaded) and cached as ``root/mnist1d/mnist1d-default.npz``.
    """
    cache = Path(root).expanduser() / "mnist1d" / "mnist1d-default.npz" if root else None
    if cache is not None and cache.is_file():
        data = load_npz_cache(cache)
    else:
        data = _generate_mnist1d()
        if cache is not None:
            atomic_save_npz(cache, **data)

    def split(x: np.ndarray, y: np.ndarray) -> TensorDataset:
        return TensorDataset(torch.from_numpy(x.astype(np.float32)).unsqueeze(-1), torch.from_numpy(y.astype(np.int64)))

    train, test = split(data["x"], data["y"]), split(data["x_test"], data["y_test"])
    return DataBundle(
        name="mnist1d",
        train=train,
        test=test,
        num_classes=10,
        in_chans=1,
        img_size=None,
        modality="sequence",
        seq_len=int(data["x"].shape[1]),
        info={"n_train": len(train), "n_test": len(test), "cache": str(cache) if cache else None},
    )


@DATASETS.register("smnist", paper="Le, Jaitly & Hinton 2015 (sequential MNIST)")
def smnist(root: str, download: bool = False, mode: str = "pixel", normalize: bool = False) -> DataBundle:
    """MNIST read pixel by pixel: ``[784, 1]`` (or row by row: ``[28, 28]``); ``normalize``: MNIST's
    mean and std first (STEP's sequential recipe)."""
    from step.data.vision import mnist

    images = mnist(root=root, download=download, normalize=normalize)
    return sequence_bundle("smnist", images, mode, False, 0)


@DATASETS.register("psmnist", paper="Le, Jaitly & Hinton 2015 (permuted sequential MNIST)")
def psmnist(root: str, download: bool = False, permutation_seed: int = 0, normalize: bool = False) -> DataBundle:
    """MNIST read pixel by pixel in one fixed random order: ``[784, 1]``."""
    from step.data.vision import mnist

    images = mnist(root=root, download=download, normalize=normalize)
    return sequence_bundle("psmnist", images, "pixel", True, permutation_seed)


@DATASETS.register("scifar10", paper="sequential CIFAR-10 (Chang et al. 2017; Spikformer/STEP sequential suite)")
def scifar10(root: str, download: bool = False, mode: str = "pixel", normalize: bool = False) -> DataBundle:
    """CIFAR-10 read pixel by pixel: ``[1024, 3]`` (or row by row: ``[32, 96]``)."""
    from step.data.vision import cifar10

    images = cifar10(root=root, download=download, normalize=normalize)
    return sequence_bundle("scifar10", images, mode, False, 0)
