"""COCO 2017 detection from the data root (``instances_*.json``), 80 classes.

Layout: ``<root>/coco/{train2017,val2017}/*.jpg`` and ``<root>/coco/annotations/instances_{train2017,
val2017}.json``. Category ids (1..90 with gaps) map to labels 1..80 in increasing id order (0 is the
background). COCO boxes ``[x, y, w, h]`` become ``[x, y, x + w, y + h]``; crowd regions and boxes
under one pixel wide or high are dropped. Images resized to ``img_size`` squared, boxes scaled.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from step.data.base import DataBundle
from step.data.paths import data_root, missing_error
from step.data.voc import DenseFiles, read_image, scale_boxes
from step.registry import DATASETS

COCO_SOURCE = "https://cocodataset.org/#download (train2017.zip, val2017.zip, annotations_trainval2017.zip)"


def read_instances(path: Path) -> tuple[list[dict], dict[int, tuple[np.ndarray, np.ndarray]], list[str]]:
    """Images, ``image id -> (boxes xyxy, labels 1..K)`` and class names from an instances JSON."""
    data = json.loads(path.read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: i + 1 for i, c in enumerate(cats)}
    per_image: dict[int, list] = defaultdict(list)
    for a in data["annotations"]:
        x, y, w, h = a["bbox"]
        if a.get("iscrowd", 0) or w < 1 or h < 1:
            continue
        per_image[a["image_id"]].append(([x, y, x + w, y + h], label_of[a["category_id"]]))
    targets = {}
    for img in data["images"]:
        anns = per_image.get(img["id"], [])
        boxes = np.asarray([b for b, _ in anns], dtype=np.float32).reshape(-1, 4)
        targets[img["id"]] = (boxes, np.asarray([lab for _, lab in anns], dtype=np.int64))
    return data["images"], targets, [c["name"] for c in cats]


@DATASETS.register("coco2017", paper="COCO 2017 (Lin et al., ECCV 2014), detection")
def coco2017(root: str | None = None, img_size: int = 640) -> DataBundle:
    """COCO 2017 detection: train2017 / val2017, 80 classes (labels 1..80, 0 = background)."""
    base = data_root(root, "coco2017") / "coco"
    needed = ["train2017", "val2017", "annotations/instances_train2017.json", "annotations/instances_val2017.json"]
    if not all((base / n).exists() for n in needed):
        raise missing_error("coco2017", [f"coco/{n}" for n in needed], base.parent, COCO_SOURCE,
                            can_download=False, alternative="digits-scenes")
    names: list[str] = []

    def split(name: str) -> DenseFiles:
        images, targets, classes = read_instances(base / "annotations" / f"instances_{name}.json")
        names[:] = classes
        info = {str(im["id"]): im for im in images}

        def load(i: str):
            im = info[i]
            image, wh = read_image(base / name / im["file_name"], img_size)
            boxes, labels = targets[im["id"]]
            return image, {"boxes": scale_boxes(boxes, wh, img_size), "labels": torch.from_numpy(labels)}

        return DenseFiles(list(info), load)

    train, val = split("train2017"), split("val2017")
    return DataBundle(name="coco2017", train=train, test=val, num_classes=len(names) + 1, in_chans=3,
                      img_size=img_size, info={"classes": ["background", *names]})
