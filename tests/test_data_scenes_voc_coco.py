"""digits-scenes and the real dense loaders (VOC 2012, ADE20K, COCO 2017) on tiny real-format files."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from step.errors import DatasetMissingError
from step.registry import DATASETS

SMALL = dict(n_train=6, n_test=3, img_size=32, min_scale=8, max_scale=12)


def test_digits_scenes_targets_agree_and_are_deterministic():
    a = DATASETS.build("digits-scenes", seed=3, **SMALL)
    b = DATASETS.build("digits-scenes", seed=3, **SMALL)
    c = DATASETS.build("digits-scenes", seed=4, **SMALL)
    assert a.num_classes == 11 and a.in_chans == 1 and len(a.train) == 6 and len(a.test) == 3
    assert torch.equal(a.train[0][0], b.train[0][0]) and not torch.equal(a.train[0][0], c.train[0][0])
    for i in range(len(a.train)):
        image, t = a.train[i]
        assert image.shape == (1, 32, 32) and t["mask"].shape == (32, 32)
        assert 1 <= len(t["labels"]) <= 4
        for box, label in zip(t["boxes"].long().tolist(), t["labels"].tolist()):
            x1, y1, x2, y2 = box
            inside = t["mask"][y1:y2, x1:x2]
            assert (inside == label).any()  # the box holds its digit's pixels ...
            assert (t["mask"] == label).sum() >= (inside == label).sum()
        # ... every labelled pixel lies in a box of its class, and the ink is bright
        covered = torch.zeros(32, 32, dtype=torch.bool)
        for box, label in zip(t["boxes"].long().tolist(), t["labels"].tolist()):
            x1, y1, x2, y2 = box
            covered[y1:y2, x1:x2] |= t["mask"][y1:y2, x1:x2] == label
        assert torch.equal(covered, t["mask"] > 0)
        assert float(image[0][t["mask"] > 0].min()) > 0.25


def _png(path, arr, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(arr.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        im.putpalette([0, 0, 0] * 256)
    im.save(path)


def _jpg(path, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, dtype=np.uint8)).save(path)


def _voc(tmp_path):
    base = tmp_path / "VOCdevkit" / "VOC2012"
    for i in ("a", "b"):
        _jpg(base / "JPEGImages" / f"{i}.jpg", 40, 20)
    mask = np.zeros((20, 40))
    mask[:, 20:] = 15  # person on the right half
    mask[0, 0] = 255
    _png(base / "SegmentationClass" / "a.png", mask, palette=True)
    _png(base / "SegmentationClass" / "b.png", np.zeros((20, 40)), palette=True)
    xml = """<annotation><filename>{i}.jpg</filename><size><width>40</width><height>20</height><depth>3</depth></size>
<object><name>dog</name><difficult>0</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax><ymax>10</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult><bndbox><xmin>5</xmin><ymin>5</ymin><xmax>8</xmax><ymax>8</ymax></bndbox></object>
</annotation>"""
    for i in ("a", "b"):
        (base / "Annotations").mkdir(parents=True, exist_ok=True)
        (base / "Annotations" / f"{i}.xml").write_text(xml.format(i=i))
    for sets in ("Segmentation", "Main"):
        (base / "ImageSets" / sets).mkdir(parents=True, exist_ok=True)
        (base / "ImageSets" / sets / "train.txt").write_text("a\n")
        (base / "ImageSets" / sets / "val.txt").write_text("b\n")


def test_voc_segmentation(tmp_path):
    _voc(tmp_path)
    bundle = DATASETS.build("voc2012-seg", root=str(tmp_path), img_size=8)
    assert bundle.num_classes == 21 and len(bundle.train) == 1 and len(bundle.test) == 1
    image, t = bundle.train[0]
    assert image.shape == (3, 8, 8) and float(image.mean()) == pytest.approx(128 / 255, abs=1e-3)
    assert set(t["mask"].unique().tolist()) <= {0, 15, 255}
    assert (t["mask"][:, 5:] == 15).all() and (t["mask"][1:, :3] == 0).all()


def test_voc_detection(tmp_path):
    _voc(tmp_path)
    image, t = DATASETS.build("voc2012-det", root=str(tmp_path), img_size=80).train[0]
    # dog (index 12 in VOC order -> label 12) at 1-based (1,1)-(20,10) on 40x20 -> edges (0,0,20,10), x2, y4
    assert t["labels"].tolist() == [12]  # the difficult cat is dropped
    assert t["boxes"].tolist() == [[0.0, 0.0, 40.0, 40.0]]
    _, t2 = DATASETS.build("voc2012-det", root=str(tmp_path), img_size=80, keep_difficult=True).train[0]
    assert t2["labels"].tolist() == [12, 8]


def test_ade20k_reduces_zero_label(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    for split in ("training", "validation"):
        _jpg(base / "images" / split / f"ADE_{split}_1.jpg", 8, 8)
        mask = np.zeros((8, 8))
        mask[:4] = 1
        mask[4:, :4] = 150
        _png(base / "annotations" / split / f"ADE_{split}_1.png", mask)
    bundle = DATASETS.build("ade20k", root=str(tmp_path), img_size=8)
    _, t = bundle.test[0]
    assert bundle.num_classes == 150
    assert (t["mask"][:4] == 0).all() and (t["mask"][4:, :4] == 149).all() and (t["mask"][4:, 4:] == 255).all()


def test_coco_instances(tmp_path):
    base = tmp_path / "coco"
    for split in ("train2017", "val2017"):
        _jpg(base / split / "000001.jpg", 20, 10)
        data = {
            "images": [{"id": 1, "file_name": "000001.jpg", "width": 20, "height": 10}],
            "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 18, "bbox": [2, 1, 6, 4], "iscrowd": 0, "area": 24},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "iscrowd": 1, "area": 25},
            ],
        }
        (base / "annotations").mkdir(parents=True, exist_ok=True)
        (base / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))
    bundle = DATASETS.build("coco2017", root=str(tmp_path), img_size=40)
    assert bundle.num_classes == 3 and bundle.info["classes"] == ["background", "person", "dog"]
    _, t = bundle.test[0]
    assert t["labels"].tolist() == [2]  # dog (id 18) is the second category by id; the crowd box is dropped
    assert t["boxes"].tolist() == [[4.0, 4.0, 16.0, 20.0]]  # [2,1,8,5] scaled x2 and x4


@pytest.mark.parametrize("name", ["voc2012-seg", "voc2012-det", "ade20k", "coco2017"])
def test_missing_dataset_one_message(tmp_path, name):
    with pytest.raises(DatasetMissingError, match="digits-scenes"):
        DATASETS.build(name, root=str(tmp_path))
