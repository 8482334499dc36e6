"""ADE20K (SceneParsing, ``ADEChallengeData2016``) from the data root, 150 classes.

Layout: ``<root>/ADEChallengeData2016/images/{training,validation}/*.jpg`` and
``annotations/{training,validation}/*.png`` with values 0 ("other", not scored) and 1..150. As in
the standard protocol (mmsegmentation's ``reduce_zero_label``), 0 becomes 255 (ignored) and
``k`` becomes ``k - 1``, giving classes 0..149. Images resized to ``img_size`` squared.
"""

from __future__ import annotations

import numpy as np

from step.data.base import DataBundle
from step.data.paths import data_root, missing_error
from step.data.voc import DenseFiles, read_image, read_mask
from step.registry import DATASETS

ADE_SOURCE = "http://sceneparsing.csail.mit.edu/ (ADEChallengeData2016.zip)"


def reduce_zero_label(arr: np.ndarray) -> np.ndarray:
    """0 -> 255 (ignored), k -> k - 1."""
    out = arr - 1
    out[arr == 0] = 255
    return out


@DATASETS.register("ade20k", paper="ADE20K (Zhou et al., CVPR 2017), SceneParsing 150 classes")
def ade20k(root: str | None = None, img_size: int = 512) -> DataBundle:
    """ADE20K semantic segmentation: training / validation, 150 classes, unlabelled pixels ignored."""
    base = data_root(root, "ade20k") / "ADEChallengeData2016"
    needed = [f"{kind}/{split}" for kind in ("images", "annotations") for split in ("training", "validation")]
    if not all((base / n).is_dir() for n in needed):
        raise missing_error("ade20k", [f"ADEChallengeData2016/{n}" for n in needed], base.parent, ADE_SOURCE,
                            can_download=False, alternative="digits-scenes")

    def split(name: str) -> DenseFiles:
        ids = sorted(p.stem for p in (base / "images" / name).glob("*.jpg"))

        def load(i: str):
            image, _ = read_image(base / "images" / name / f"{i}.jpg", img_size)
            return image, {"mask": read_mask(base / "annotations" / name / f"{i}.png", img_size, reduce_zero_label)}

        return DenseFiles(ids, load)

    return DataBundle(name="ade20k", train=split("training"), test=split("validation"), num_classes=150, in_chans=3,
                      img_size=img_size, info={"ignore_index": 255})
