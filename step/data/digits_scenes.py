"""``digits-scenes``: canvases of 1 to 4 embedded digits, with per-pixel masks and boxes (no download).

Each canvas (``img_size`` square, one channel, black background) holds ``min_digits..max_digits``
digits from scikit-learn's 8x8 scans (:func:`step.data.digits.load_digits_arrays`), each resized
bilinearly to a random side in ``[min_scale, max_scale]`` pixels and placed at a random position
where its square does not overlap the ones already placed. Targets per canvas:

* ``mask`` ``[H, W]`` long: 0 for background, ``1 + digit`` where the placed digit's intensity is
  above ``ink`` (so 11 classes);
* ``boxes`` ``[n, 4]`` float, xyxy pixel edges of each digit's ink (its tight box), and ``labels``
  ``[n]`` long ``1 + digit`` (label 0 is the background, torchvision's convention).

Train canvases use only the train part of the stratified digit split and test canvases only the
test part, so no scan appears in both. Everything is fixed by ``seed``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from step.data.base import DataBundle
from step.data.digits import load_digits_arrays, stratified_split
from step.registry import DATASETS


class SceneDataset(Dataset):
    """``(image [C, H, W], {"mask", "boxes", "labels"})`` per index from pre-built tensors."""

    def __init__(self, images: torch.Tensor, masks: torch.Tensor, boxes: list[torch.Tensor], labels: list[torch.Tensor]):
        self.images, self.masks, self.boxes, self.labels = images, masks, boxes, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], {"mask": self.masks[i].long(), "boxes": self.boxes[i], "labels": self.labels[i]}


def _resized_bank(images: np.ndarray, sizes: range) -> dict[int, np.ndarray]:
    x = torch.from_numpy(images).unsqueeze(1)
    return {s: F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False).clamp_(0, 1)[:, 0].numpy() for s in sizes}


def make_scenes(images: np.ndarray, labels: np.ndarray, n: int, img_size: int = 64, min_digits: int = 1,
                max_digits: int = 4, min_scale: int = 12, max_scale: int = 24, ink: float = 0.25,
                seed: int = 0, max_tries: int = 50) -> SceneDataset:
    """``n`` canvases built from the digit scans ``images`` ``[N, 8, 8]`` with ``labels`` ``[N]``."""
    rng = np.random.default_rng(seed)
    bank = _resized_bank(images, range(min_scale, max_scale + 1))
    canvases = np.zeros((n, img_size, img_size), dtype=np.float32)
    masks = np.zeros((n, img_size, img_size), dtype=np.uint8)
    all_boxes, all_labels = [], []
    for k in range(n):
        placed: list[tuple[int, int, int]] = []
        boxes, labs = [], []
        for _ in range(int(rng.integers(min_digits, max_digits + 1))):
            for _ in range(max_tries):
                s = int(rng.integers(min_scale, max_scale + 1))
                x0, y0 = (int(v) for v in rng.integers(0, img_size - s + 1, size=2))
                if all(x0 + s <= px or px + ps <= x0 or y0 + s <= py or py + ps <= y0 for px, py, ps in placed):
                    break
            else:
                continue  # no free place for this digit
            j = int(rng.integers(len(images)))
            digit = bank[s][j]
            on = digit > ink
            if not on.any():
                continue
            placed.append((x0, y0, s))
            canvases[k, y0:y0 + s, x0:x0 + s] = digit
            masks[k, y0:y0 + s, x0:x0 + s][on] = labels[j] + 1
            ys, xs = np.nonzero(on)
            boxes.append([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1])
            labs.append(int(labels[j]) + 1)
        all_boxes.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
        all_labels.append(torch.tensor(labs, dtype=torch.long))
    return SceneDataset(torch.from_numpy(canvases).unsqueeze(1), torch.from_numpy(masks), all_boxes, all_labels)


@DATASETS.register("digits-scenes", paper="scikit-learn load_digits placed on canvases (STEP, embedded)")
def digits_scenes(root: str | None = None, img_size: int = 64, n_train: int = 2000, n_test: int = 500,
                  min_digits: int = 1, max_digits: int = 4, min_scale: int = 12, max_scale: int = 24,
                  seed: int = 0) -> DataBundle:
    """Embedded scenes of handwritten digits for segmentation (11 classes) and detection (10 + background)."""
    if not 8 <= min_scale <= max_scale <= img_size:
        raise ValueError(f"digits-scenes: need 8 <= min_scale <= max_scale <= img_size, got {min_scale}, {max_scale}, {img_size}")
    if not 1 <= min_digits <= max_digits:
        raise ValueError(f"digits-scenes: need 1 <= min_digits <= max_digits, got {min_digits}, {max_digits}")
    images, labels = load_digits_arrays()
    train_idx, test_idx = stratified_split(labels, 0.2, 0)
    common = dict(img_size=img_size, min_digits=min_digits, max_digits=max_digits, min_scale=min_scale, max_scale=max_scale)
    train = make_scenes(images[train_idx], labels[train_idx], n_train, seed=seed, **common)
    test = make_scenes(images[test_idx], labels[test_idx], n_test, seed=seed + 1, **common)
    return DataBundle(name="digits-scenes", train=train, test=test, num_classes=11, in_chans=1, img_size=img_size,
                      modality="image", info={"n_train": n_train, "n_test": n_test, "background": 0})
