"""``digits``: scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, no download).

Images are scaled from 0..16 to [0, 1] and resized bilinearly to ``img_size``. The stratified
train/test split is fixed by ``split_seed``, independent of the run seed, so runs that differ
only in ``seed`` see the same test set.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from step.data.base import DataBundle
from step.data.paths import physical_memory
from step.errors import ConfigError
from step.registry import DATASETS


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """(images [N, 8, 8] float32 in [0, 1], labels [N] int64) from scikit-learn."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def resize_images(images: np.ndarray, img_size: int) -> torch.Tensor:
    """``[N, h, w]`` -> ``[N, 1, img_size, img_size]`` (bilinear, clamped to [0, 1]).

    A size whose float32 result is larger than this machine's memory is refused before anything is
    allocated (trying would fail, or make the machine swap until it is killed)."""
    need, have = len(images) * img_size * img_size * 4, physical_memory()
    if have and need > have:
        raise ConfigError(f"dataset.img_size={img_size}: the {len(images):,} digits at that size need "
                          f"{need / 1e9:,.1f} GB, more than this machine's {have / 1e9:,.1f} GB of memory; "
                          "use a smaller dataset.img_size.")
    x = torch.from_numpy(images).unsqueeze(1)
    if img_size != x.shape[-1]:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0)


def stratified_split(labels: np.ndarray, test_fraction: float, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a stratified split (same classes proportions in both parts)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    train_idx, test_idx = train_test_split(
        idx, test_size=test_fraction, stratify=labels, random_state=split_seed
    )
    return np.sort(train_idx), np.sort(test_idx)


def split_tensors(x: torch.Tensor, y: torch.Tensor, labels: np.ndarray, test_fraction: float, split_seed: int):
    """``(train, test, info)``: TensorDatasets of the stratified split fixed by ``split_seed``."""
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    train, test = TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[test_idx], y[test_idx])
    return train, test, {"n_train": len(train_idx), "n_test": len(test_idx)}


@DATASETS.register("digits", paper="scikit-learn load_digits (UCI optdigits test set)")
def digits(root: str | None = None, img_size: int = 16, test_fraction: float = 0.2, split_seed: int = 0) -> DataBundle:
    """Embedded 8x8 handwritten digits, resized; 10 classes, 1 channel."""
    if img_size < 8:
        raise ValueError(f"digits: img_size must be >= 8, got {img_size}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"digits: test_fraction must be in (0, 1), got {test_fraction}")
    images, labels = load_digits_arrays()
    x = resize_images(images, img_size)
    y = torch.from_numpy(labels)
    train, test, info = split_tensors(x, y, labels, test_fraction, split_seed)
    return DataBundle(
        name="digits", train=train, test=test, num_classes=10, in_chans=1, img_size=img_size,
        modality="image", info=info,
    )
