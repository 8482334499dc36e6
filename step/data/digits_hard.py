"""``digits-hard``: the embedded digits made hard enough for CPU ablations to separate variants.

At CPU size every variant of an ablation reaches 95-99% on the plain ``digits`` (1,437 training
images), so the differences sit inside the seed spread (docs/ablations.md). This set keeps the
same 1,797 real scans and split and corrupts each image deterministically:

1. **jitter**: the 8x8 scan is resized to ``digit_px`` x ``digit_px`` (bilinear) and placed on an
   ``img_size`` canvas at an offset drawn uniformly in ``[0, img_size - digit_px]`` on each axis;
2. **occlusion**: one ``occlude_px`` square at a uniform position is set to 0 or 1 (a coin flip),
   erasing strokes or adding a blob;
3. **noise**: additive Gaussian noise of standard deviation ``noise_std``, then clipped to [0, 1]
   (values stay intensities, so rate, latency and phase encoders apply).

Each training scan yields ``train_copies`` corrupted images and each test scan ``test_copies``
(more test images shrink the test-sampling part of the spread at no training cost). The split is
made on the scans before corrupting, so no test digit has a corrupted twin in training. Every draw
comes from one NumPy generator seeded by ``corruption_seed``: the set is the same on every machine
and independent of the run's ``seed``. Nothing is downloaded or cached (generation takes well under
a second).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from step.data.base import DataBundle
from step.data.digits import load_digits_arrays, resize_images, stratified_split
from step.registry import DATASETS


def corrupt(images: np.ndarray, copies: int, rng: np.random.Generator, img_size: int, digit_px: int,
            occlude_px: int, noise_std: float) -> torch.Tensor:
    """``copies`` corrupted ``[1, img_size, img_size]`` images per 8x8 scan, scan-major order."""
    n = len(images)
    digits = resize_images(images, digit_px)[:, 0].numpy()  # [n, d, d]
    out = np.zeros((n, copies, img_size, img_size), dtype=np.float32)
    span = img_size - digit_px + 1
    for c in range(copies):
        oy, ox = rng.integers(0, span, n), rng.integers(0, span, n)
        by, bx = rng.integers(0, img_size - occlude_px + 1, n), rng.integers(0, img_size - occlude_px + 1, n)
        fill = rng.integers(0, 2, n).astype(np.float32)
        noise = rng.normal(0.0, noise_std, (n, img_size, img_size)).astype(np.float32)
        for i in range(n):
            canvas = out[i, c]
            canvas[oy[i]:oy[i] + digit_px, ox[i]:ox[i] + digit_px] = digits[i]
            if occlude_px:
                canvas[by[i]:by[i] + occlude_px, bx[i]:bx[i] + occlude_px] = fill[i]
            canvas += noise[i]
    return torch.from_numpy(np.clip(out, 0.0, 1.0).reshape(n * copies, 1, img_size, img_size))


@DATASETS.register("digits-hard", paper="scikit-learn load_digits, jittered, occluded and noised (step/data/digits_hard.py)")
def digits_hard(root: str | None = None, img_size: int = 16, digit_px: int = 12, occlude_px: int = 4,
                noise_std: float = 0.2, train_copies: int = 2, test_copies: int = 3, corruption_seed: int = 0,
                test_fraction: float = 0.2, split_seed: int = 0) -> DataBundle:
    """Embedded digits with jitter, occlusion and noise (see the module doc); 10 classes, 1 channel."""
    if not 8 <= digit_px <= img_size:
        raise ValueError(f"digits-hard: digit_px must be in [8, img_size={img_size}], got {digit_px}")
    if not 0 <= occlude_px <= img_size or noise_std < 0 or train_copies < 1 or test_copies < 1:
        raise ValueError("digits-hard: needs 0 <= occlude_px <= img_size, noise_std >= 0 and copies >= 1, got "
                         f"occlude_px={occlude_px}, noise_std={noise_std}, train_copies={train_copies}, "
                         f"test_copies={test_copies}")
    images, labels = load_digits_arrays()
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    rng = np.random.default_rng(corruption_seed)
    kw = dict(rng=rng, img_size=img_size, digit_px=digit_px, occlude_px=occlude_px, noise_std=noise_std)
    x_train = corrupt(images[train_idx], train_copies, **kw)
    x_test = corrupt(images[test_idx], test_copies, **kw)
    y = torch.from_numpy(labels)
    y_train = y[train_idx].repeat_interleave(train_copies)
    y_test = y[test_idx].repeat_interleave(test_copies)
    return DataBundle(
        name="digits-hard", train=TensorDataset(x_train, y_train), test=TensorDataset(x_test, y_test),
        num_classes=10, in_chans=1, img_size=img_size, modality="image",
        info={"n_train": len(y_train), "n_test": len(y_test), "n_scans_train": len(train_idx),
              "n_scans_test": len(test_idx)},
    )
