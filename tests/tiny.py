"""Command-line overrides that shrink any composed model, and tiny fakes of the real datasets on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: Meta-SpikeFormer: five sub-stages of width 8..32, one block each
META = ["model.dims=[8,16,32,32,32]", "model.depths=[1,1,1,1,1]", "model.heads=2"]
#: QKFormer's layouts need 1-2 Q-K blocks before its last stage
QK_DEPTH = {"cifar": 3, "imagenet": 4, "dvs": 2}


def tiny_model(model: Any) -> list[str]:
    """Overrides that keep ``model``'s structure (its family, layout, attention) at the smallest width."""
    keys = set(model.keys())
    if keys == {"name", "base"}:  # int8-twin of a registered size: its base's keywords
        return ["+model.depth=1", "+model.dim=16", "+model.heads=2"]
    if "dims" in keys:
        return list(META)
    out = ["model.depth=" + str(QK_DEPTH[model.layout] if "layout" in keys else 1),
           "model.dim=" + ("32" if "layout" in keys else "16"), "model.heads=2"]
    return out


def write_cifar(root: Path, which: str = "cifar10", n: int = 8) -> None:
    """CIFAR-10 / CIFAR-100 python pickles with ``n`` random images per file."""
    import pickle

    rng = np.random.default_rng(0)
    if which == "cifar10":
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True, exist_ok=True)
        for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
            with open(folder / name, "wb") as f:
                pickle.dump({"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             "labels": [j % 10 for j in range(n)]}, f)
        with open(folder / "batches.meta", "wb") as f:
            pickle.dump({"label_names": [f"c{k}" for k in range(10)]}, f)
    else:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True, exist_ok=True)
        for name, size in (("train", 2 * n), ("test", n)):
            fine = [j % 100 for j in range(size)]
            with open(folder / name, "wb") as f:
                pickle.dump({"data": rng.integers(0, 256, (size, 3072), dtype=np.uint8), "fine_labels": fine,
                             "coarse_labels": [j % 20 for j in fine]}, f)
        with open(folder / "meta", "wb") as f:
            pickle.dump({"fine_label_names": [f"f{k}" for k in range(100)], "coarse_label_names": []}, f)


def write_mnist(root: Path, n: int = 8) -> None:
    import struct

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for prefix in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes())


def write_imagenet(root: Path, classes: int = 1000, size: int = 8) -> None:
    """``imagenet/{train,val}/<class>/0.png``: one tiny image per class and split."""
    from PIL import Image

    rng = np.random.default_rng(3)
    for split in ("train", "val"):
        for c in range(classes):
            folder = root / "imagenet" / split / f"n{c:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / "0.png")
