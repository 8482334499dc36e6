"""Real event-based datasets read with tonic from the data root, binned into frames and cached on disk.

Layouts under the data root (tonic's, so an existing tonic download is found as is):

==================  =============================================================  =========
``nmnist``          ``NMNIST/{Train,Test}/<digit>/*.bin``                          34 x 34
``dvs-gesture``     ``DVSGesture/{ibmGestureTrain,ibmGestureTest}/user*/<y>.npy``  128 x 128
``cifar10-dvs``     ``CIFAR10DVS/<class>/*.aedat4`` (needs the ``aedat`` package)   128 x 128
``n-caltech101``    ``NCALTECH101/Caltech101/<class>/*.bin``                       <= 240 x 180
``shd``             ``SHD/shd_{train,test}.h5``                                    700 units
==================  =============================================================  =========

Events are rescaled to ``img_size`` (x' = floor(x * img_size / width), the same for y) and
accumulated into ``timesteps`` frames ``[T, 2, H, W]`` of event counts (channel 1: polarity != 0),
each frame spanning an equal share of the recording's time (``split_by: time``, tonic's
``ToFrame``) or of its events (``split_by: number``, SpikingJelly's ``split_by='number'``, which
every released DVS recipe uses: frame i holds events ``[i*(N//T), (i+1)*(N//T))`` in recording
order and the last frame also takes the ``N % T`` left over; :class:`FramesByNumber`).
``augment`` (training split only; :mod:`step.data.event_augment`): ``none``, ``flip`` (horizontal,
p 0.5) or ``flip-trivial`` (the flip, then the TrivialAugment-style policy of the released
Spikformer / QKFormer DVS code). N-Caltech101 keeps its 101 object classes (``BACKGROUND_Google`` is left out).
CIFAR10-DVS and N-Caltech101 have no official split: the first
``train_fraction`` of each class's files (sorted by name) train, the rest test. SHD is a sequence
set: ``x`` = ``[seq_len, 700]`` spike counts of the 700 cochlea channels in ``seq_len`` time bins.

Binned frames are cached as ``root/cache/<dataset>/<hash of the binning>/<split>/<i>.npy``.
Nothing is downloaded unless ``download: true`` (tonic then fetches the official archives).
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from step.data.base import DataBundle
from step.data.event_augment import AugmentedFrames, event_augmentation
from step.data.paths import data_root, download_guard, missing_error, params_key
from step.errors import StepError
from step.registry import DATASETS

SPLIT_BY = ("time", "number")


class FramesByNumber:
    """Events -> ``[T, P, H, W]`` counts, frame i holding the i-th equal share of the events (in
    recording order); the last frame also takes the remainder (SpikingJelly ``split_by='number'``)."""

    def __init__(self, sensor_size: tuple[int, int, int], n_frames: int):
        self.width, self.height, self.polarities = (int(v) for v in sensor_size)
        self.n_frames = int(n_frames)

    def __call__(self, events: np.ndarray) -> np.ndarray:
        n, T = len(events), self.n_frames
        bounds = [i * (n // T) for i in range(T)] + [n]
        channel = (events["p"] != 0).astype(np.int64) if self.polarities > 1 else np.zeros(n, np.int64)
        cell = (channel * self.height + events["y"].astype(np.int64)) * self.width + events["x"].astype(np.int64)
        size = self.polarities * self.height * self.width
        frames = [np.bincount(cell[bounds[i]:bounds[i + 1]], minlength=size) for i in range(T)]
        return np.stack(frames).reshape(T, self.polarities, self.height, self.width).astype(np.int16)


class RescaleEvents:
    """Map event coordinates from a ``width`` x ``height`` sensor onto an ``size`` x ``size`` grid."""

    def __init__(self, width: int, height: int, size: int):
        self.width, self.height, self.size = width, height, size

    def __call__(self, events: np.ndarray) -> np.ndarray:
        events = events.copy()
        for axis, extent in (("x", self.width), ("y", self.height)):
            scaled = np.floor(events[axis].astype(np.float64) * self.size / extent)
            events[axis] = np.clip(scaled, 0, self.size - 1).astype(events.dtype[axis])
        return events


class FrameCache(Dataset):
    """Frames of ``source[i]`` stored once as ``cache_dir/<i>.npy`` and read from there afterwards."""

    def __init__(self, source: Dataset, cache_dir: Path | None):
        self.source, self.cache_dir = source, cache_dir
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, i: int):
        path = self.cache_dir / f"{i}.npy" if self.cache_dir is not None else None
        label_path = path.with_suffix(".label") if path is not None else None
        if path is not None and path.is_file() and label_path.is_file():
            frames, y = np.load(path), int(label_path.read_text())
        else:
            frames, y = self.source[i]
            frames, y = np.asarray(frames, dtype=np.int16), int(y)
            if path is not None:
                tmp = path.with_name(f".{i}.{os.getpid()}.tmp.npy")
                np.save(tmp, frames)
                os.replace(tmp, path)
                label_path.write_text(str(y))
        return torch.from_numpy(frames.astype(np.float32)), y


def _frame_transform(sensor_wh: tuple[int, int], img_size: int, timesteps: int, split_by: str, polarities: int = 2) -> Callable:
    import tonic.transforms as tt

    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {SPLIT_BY}, got {split_by!r}")
    steps: list[Callable] = []
    if (img_size, img_size) != tuple(sensor_wh):
        steps.append(RescaleEvents(sensor_wh[0], sensor_wh[1], img_size))
    if split_by == "time":
        steps.append(tt.ToFrame(sensor_size=(img_size, img_size, polarities), n_time_bins=timesteps))
    else:
        steps.append(FramesByNumber((img_size, img_size, polarities), timesteps))
    return tt.Compose(steps)


def _offline(cls: type) -> type:
    """``cls`` without tonic's full-dataset check (which downloads when it fails); same name, same folder."""
    return type(cls.__name__, (cls,), {"_check_exists": lambda self: True})


def _has_files(folder: Path, suffix: str) -> bool:
    return folder.is_dir() and next(folder.rglob(f"*{suffix}"), None) is not None


def _per_class_split(paths: list[str], targets: list, train_fraction: float) -> tuple[list[int], list[int]]:
    """First ``train_fraction`` of each class's files (sorted by path) for training, the rest for testing."""
    by_class: dict = defaultdict(list)
    for i, t in enumerate(targets):
        by_class[t].append(i)
    train, test = [], []
    for t in sorted(by_class, key=str):
        idx = sorted(by_class[t], key=lambda i: paths[i])
        n = int(round(len(idx) * train_fraction))
        train += idx[:n]
        test += idx[n:]
    return sorted(train), sorted(test)


def _cache_dir(base: Path, name: str, key: dict, split: str, cache: bool) -> Path | None:
    return base / "cache" / name / params_key(key) / split if cache else None


def _event_bundle(name, train, test, num_classes, img_size, timesteps, augment="none", **info) -> DataBundle:
    transform = event_augmentation(augment)
    if transform is not None:
        train = AugmentedFrames(train, transform)
    return DataBundle(name=name, train=train, test=test, num_classes=num_classes, in_chans=2, img_size=img_size,
                      modality="event", timesteps=timesteps,
                      info={"n_train": len(train), "n_test": len(test), "augment": augment, **info})


def _two_split_set(name, cls, base, folders, suffix, url, sensor_wh, num_classes, alternative,
                   download, timesteps, img_size, split_by, cache, augment):
    location = base / cls.__name__
    if not download and not all(_has_files(location / f, suffix) for f in folders):
        raise missing_error(name, [f"{f}/.../*{suffix}" for f in folders], location, url, True, alternative)
    reader = cls if download else _offline(cls)
    transform = _frame_transform(sensor_wh, img_size, timesteps, split_by)
    key = {"timesteps": timesteps, "img_size": img_size, "split_by": split_by}
    with download_guard(name, [f"{f}/.../*{suffix}" for f in folders], location, url, alternative, download):
        train = reader(str(base), train=True, transform=transform)
        test = reader(str(base), train=False, transform=transform)
    return _event_bundle(
        name, FrameCache(train, _cache_dir(base, name, key, "train", cache)),
        FrameCache(test, _cache_dir(base, name, key, "test", cache)), num_classes, img_size, timesteps, augment, split_by=split_by,
    )


@DATASETS.register("nmnist", paper="Orchard et al. 2015 (N-MNIST)")
def nmnist(root: str, download: bool = False, timesteps: int = 10, img_size: int = 34, split_by: str = "time",
           cache: bool = True, augment: str = "none") -> DataBundle:
    """N-MNIST: MNIST digits filmed by an ATIS during three saccades (60,000 / 10,000, 34 x 34, 10 classes)."""
    from tonic.datasets import NMNIST

    return _two_split_set("nmnist", NMNIST, data_root(root, "nmnist"), ["Train", "Test"], ".bin",
                          "https://www.garrickorchard.com/datasets/n-mnist", (34, 34), 10, "digits-dvs",
                          download, timesteps, img_size, split_by, cache, augment)


@DATASETS.register("dvs-gesture", paper="Amir et al. 2017 (IBM DVS128 Gesture)")
def dvs_gesture(root: str, download: bool = False, timesteps: int = 16, img_size: int = 128, split_by: str = "time",
                cache: bool = True, augment: str = "none") -> DataBundle:
    """DVS128 Gesture: 11 hand and arm gestures of 29 people (1,077 / 264 recordings, 128 x 128)."""
    from tonic.datasets import DVSGesture

    return _two_split_set("dvs-gesture", DVSGesture, data_root(root, "dvs-gesture"), ["ibmGestureTrain", "ibmGestureTest"],
                          ".npy", "https://research.ibm.com/interactive/dvsgesture/ (tonic fetches its preprocessed copy)",
                          (128, 128), 11, "digits-dvs", download, timesteps, img_size, split_by, cache, augment)


def _one_split_set(name, reader, base, location, url, sensor_wh, timesteps, img_size, split_by, train_fraction, cache,
                   suffix: str, download: bool, label_of: Callable | None = None, exclude: tuple[str, ...] = (),
                   class_names: list[str] | None = None, augment: str = "none"):
    """One folder of recordings split per class; ``class_names``: a fixed label set (the reader's
    targets are already indices into it), else the classes found, indexed by ``label_of``."""
    key = {"timesteps": timesteps, "img_size": img_size, "split_by": split_by}
    with download_guard(name, [f"<class>/*{suffix}"], location, url, "digits-dvs", download):
        full = reader(str(base), transform=_frame_transform(sensor_wh, img_size, timesteps, split_by))
    keep = [i for i, t in enumerate(full.targets) if str(t) not in exclude]
    full.data, full.targets = [full.data[i] for i in keep], [full.targets[i] for i in keep]
    targets = list(full.targets)
    classes = sorted(set(targets), key=str)
    if label_of is not None:
        full.target_transform = label_of(classes)
    train_idx, test_idx = _per_class_split(list(full.data), targets, train_fraction)
    cached = FrameCache(full, _cache_dir(base, name, key, "all", cache))
    names = list(class_names) if class_names is not None else [str(c) for c in classes]
    return _event_bundle(name, Subset(cached, train_idx), Subset(cached, test_idx), len(names), img_size, timesteps,
                         augment, split_by=split_by, train_fraction=train_fraction, classes=names)


@DATASETS.register("cifar10-dvs", paper="Li et al. 2017 (CIFAR10-DVS)")
def cifar10_dvs(root: str, download: bool = False, timesteps: int = 10, img_size: int = 128, split_by: str = "time",
                train_fraction: float = 0.9, cache: bool = True, augment: str = "none") -> DataBundle:
    """CIFAR10-DVS: 10,000 recordings of CIFAR-10 images moving on a monitor (128 x 128, 10 classes)."""
    from tonic.datasets import CIFAR10DVS

    base = data_root(root, "cifar10-dvs")
    location = base / "CIFAR10DVS"
    url = "https://figshare.com/articles/dataset/CIFAR10-DVS_New/4724671 (tonic fetches it)"
    if not download and not _has_files(location, ".aedat4"):
        raise missing_error("cifar10-dvs", ["<class>/*.aedat4 (airplane ... truck)"], location, url, True, "digits-dvs")
    try:
        import aedat  # noqa: F401  (tonic's AEDAT4 reader)
    except ImportError:
        raise StepError("cifar10-dvs: tonic reads CIFAR10-DVS's AEDAT4 files with the 'aedat' package, which is not "
                        "installed: pip install aedat") from None
    reader = CIFAR10DVS if download else _offline(CIFAR10DVS)
    return _one_split_set("cifar10-dvs", reader, base, location, url, (128, 128), timesteps, img_size, split_by,
                          train_fraction, cache, ".aedat4", download, augment=augment,
                          class_names=sorted(CIFAR10DVS.classes, key=CIFAR10DVS.classes.get))


class _ClassIndex:
    def __init__(self, classes: list[str]):
        self.index = {c: i for i, c in enumerate(classes)}

    def __call__(self, target: str) -> int:
        return self.index[target]


@DATASETS.register("n-caltech101", paper="Orchard et al. 2015 (N-Caltech101)")
def n_caltech101(root: str, download: bool = False, timesteps: int = 10, img_size: int = 64, split_by: str = "time",
                 train_fraction: float = 0.9, cache: bool = True, augment: str = "none") -> DataBundle:
    """N-Caltech101: Caltech101 images filmed during saccades (8,709 recordings, up to 240 x 180, resized)."""
    from tonic.datasets import NCALTECH101

    base = data_root(root, "n-caltech101")
    location = base / "NCALTECH101" / "Caltech101"
    url = "https://www.garrickorchard.com/datasets/n-caltech101"
    if not download and not _has_files(location, ".bin"):
        raise missing_error("n-caltech101", ["<class>/*.bin (accordion ... yin_yang)"], location, url, True, "digits-dvs")
    reader = NCALTECH101 if download else _offline(NCALTECH101)
    return _one_split_set("n-caltech101", reader, base, location, url, (240, 180), timesteps, img_size, split_by,
                          train_fraction, cache, ".bin", download, label_of=_ClassIndex, exclude=("BACKGROUND_Google",),
                          augment=augment)


class _SHDFrames(Dataset):
    """SHD sample -> ``[seq_len, 700]`` spike counts."""

    def __init__(self, shd, seq_len: int):
        import tonic.transforms as tt

        self.shd, self.to_frame = shd, tt.ToFrame(sensor_size=(700, 1, 1), n_time_bins=seq_len)

    def __len__(self) -> int:
        return len(self.shd)

    def __getitem__(self, i: int):
        events, y = self.shd[i]
        return self.to_frame(events).reshape(self.to_frame.n_time_bins, 700), int(y)


@DATASETS.register("shd", paper="Cramer et al. 2020 (Spiking Heidelberg Digits)")
def shd(root: str, download: bool = False, seq_len: int = 100, cache: bool = True) -> DataBundle:
    """SHD: spoken digits 0-9 in English and German as cochlea-model spikes (8,156 / 2,264, 700 channels, 20 classes)."""
    from tonic.datasets import SHD

    base = data_root(root, "shd")
    location = base / "SHD"
    files = ["shd_train.h5", "shd_test.h5"]
    if not download and not all((location / f).is_file() for f in files):
        raise missing_error("shd", files, location, "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/",
                            True, "mnist1d")
    reader = SHD if download else _offline(SHD)
    key = {"seq_len": seq_len}
    with download_guard("shd", files, location, "https://zenkelab.org/resources/spiking-heidelberg-datasets-shd/",
                        "mnist1d", download):
        train_set, test_set = reader(str(base), train=True), reader(str(base), train=False)
    train = FrameCache(_SHDFrames(train_set, seq_len), _cache_dir(base, "shd", key, "train", cache))
    test = FrameCache(_SHDFrames(test_set, seq_len), _cache_dir(base, "shd", key, "test", cache))
    return DataBundle(name="shd", train=train, test=test, num_classes=20, in_chans=700, img_size=None,
                      modality="sequence", seq_len=seq_len, info={"n_train": len(train), "n_test": len(test)})
