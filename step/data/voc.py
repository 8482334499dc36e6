"""PASCAL VOC 2012 from the data root: segmentation (``voc2012-seg``) and detection (``voc2012-det``).

Layout (as distributed): ``<root>/VOCdevkit/VOC2012/`` with ``JPEGImages/<id>.jpg``,
``SegmentationClass/<id>.png`` (palette PNG: 0 background, 1..20 classes, 255 boundary = not
scored), ``Annotations/<id>.xml`` and the split lists ``ImageSets/{Segmentation,Main}/{train,val}.txt``.
Images are resized to ``img_size`` squared (bilinear; masks nearest; boxes scaled). Detection
labels are 1..20 in :data:`VOC_CLASSES` order (0 is the background); VOC's 1-based inclusive box
corners become 0-based pixel edges ``(xmin - 1, ymin - 1, xmax, ymax)``; objects marked
``difficult`` are dropped unless ``keep_difficult``. Also holds the image / mask readers the
ADE20K and COCO loaders share.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from step.data.base import DataBundle
from step.data.paths import data_root, missing_error
from step.registry import DATASETS

VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
VOC_SOURCE = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/ (VOCtrainval_11-May-2012.tar)"


def read_image(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """RGB ``[3, size, size]`` in [0, 1] and the original ``(width, height)``."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        wh = im.size
        arr = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous(), wh


def read_mask(path: Path, size: int, remap: Callable[[np.ndarray], np.ndarray] | None = None) -> torch.Tensor:
    """Class-index PNG -> ``[size, size]`` long (nearest resize; ``remap`` applied to the values)."""
    from PIL import Image

    with Image.open(path) as im:
        arr = np.asarray(im.resize((size, size), Image.NEAREST)).astype(np.int64)
    if arr.ndim == 3:
        raise ValueError(f"{path} is not a single-channel class-index PNG")
    return torch.from_numpy(remap(arr) if remap is not None else arr)


class DenseFiles(Dataset):
    """Reads one sample per id with ``load(id) -> (image, target dict)``."""

    def __init__(self, ids: list[str], load: Callable[[str], tuple[torch.Tensor, dict]]):
        self.ids, self.load = ids, load

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self.load(self.ids[i])


def _voc_dir(root, name: str, needed: list[str]) -> Path:
    base = data_root(root, name) / "VOCdevkit" / "VOC2012"
    if not all((base / n).exists() for n in needed):
        raise missing_error(name, [f"VOCdevkit/VOC2012/{n}" for n in needed], data_root(root, name), VOC_SOURCE,
                            can_download=False, alternative="digits-scenes")
    return base


def _ids(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@DATASETS.register("voc2012-seg", paper="PASCAL VOC 2012 (Everingham et al., 2010), segmentation")
def voc2012_seg(root: str | None = None, img_size: int = 512) -> DataBundle:
    """VOC 2012 semantic segmentation: train / val lists, 21 classes (background + 20), 255 ignored."""
    base = _voc_dir(root, "voc2012-seg", ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation/train.txt",
                                          "ImageSets/Segmentation/val.txt"])

    def load(i: str):
        image, _ = read_image(base / "JPEGImages" / f"{i}.jpg", img_size)
        return image, {"mask": read_mask(base / "SegmentationClass" / f"{i}.png", img_size)}

    split = {s: DenseFiles(_ids(base / "ImageSets" / "Segmentation" / f"{s}.txt"), load) for s in ("train", "val")}
    return DataBundle(name="voc2012-seg", train=split["train"], test=split["val"], num_classes=21, in_chans=3,
                      img_size=img_size, info={"classes": ("background",) + VOC_CLASSES, "ignore_index": 255})


def parse_voc_xml(path: Path, keep_difficult: bool = False) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Boxes ``[n, 4]`` (0-based edges), labels ``[n]`` in 1..20 and the image ``(width, height)``."""
    root = ET.parse(path).getroot()
    size = root.find("size")
    wh = (int(size.findtext("width")), int(size.findtext("height")))
    boxes, labels = [], []
    for obj in root.iter("object"):
        if not keep_difficult and int(obj.findtext("difficult", "0") or 0):
            continue
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x1 - 1, y1 - 1, x2, y2])
        labels.append(VOC_CLASSES.index(obj.findtext("name").strip()) + 1)
    return np.asarray(boxes, dtype=np.float32).reshape(-1, 4), np.asarray(labels, dtype=np.int64), wh


def scale_boxes(boxes: np.ndarray, wh: tuple[int, int], size: int) -> torch.Tensor:
    """Boxes on a ``wh`` image -> on the ``size x size`` resized image."""
    scale = np.array([size / wh[0], size / wh[1]] * 2, dtype=np.float32)
    return torch.from_numpy(boxes * scale)


@DATASETS.register("voc2012-det", paper="PASCAL VOC 2012 (Everingham et al., 2010), detection")
def voc2012_det(root: str | None = None, img_size: int = 512, keep_difficult: bool = False) -> DataBundle:
    """VOC 2012 detection: ImageSets/Main train / val, 20 classes (labels 1..20, 0 = background)."""
    base = _voc_dir(root, "voc2012-det", ["JPEGImages", "Annotations", "ImageSets/Main/train.txt", "ImageSets/Main/val.txt"])

    def load(i: str):
        image, _ = read_image(base / "JPEGImages" / f"{i}.jpg", img_size)
        boxes, labels, wh = parse_voc_xml(base / "Annotations" / f"{i}.xml", keep_difficult)
        return image, {"boxes": scale_boxes(boxes, wh, img_size), "labels": torch.from_numpy(labels)}

    split = {s: DenseFiles(_ids(base / "ImageSets" / "Main" / f"{s}.txt"), load) for s in ("train", "val")}
    return DataBundle(name="voc2012-det", train=split["train"], test=split["val"], num_classes=21, in_chans=3,
                      img_size=img_size, info={"classes": ("background",) + VOC_CLASSES})
