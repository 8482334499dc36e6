"""Real static image datasets read from the data root: CIFAR-10/100, MNIST, Fashion-MNIST, ImageNet, ImageFolder.

Layouts under the data root (torchvision's, so an existing torchvision download is found as is):

* ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``
* ``cifar-100-python/{train, test, meta}``
* ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (and ``FashionMNIST/raw/...``)
* ``imagenet/{train,val}/<class>/*.JPEG`` (val sorted into class folders), and for ``imagefolder``
  ``<path>/{train,val}/<class>/*``.

``download: false`` is the default: nothing is fetched unless ``dataset.download=true``. File
presence is checked instead of torchvision's MD5 sums, so a re-packed or partial copy loads. The
transform keywords are described in :mod:`step.data.transforms`; the batch recipe of a dataset
config (``mixup``, ``cutmix``, ``label_smoothing``, ...) is applied by the training loop
(:mod:`step.engine.recipe`), not here.
"""

from __future__ import annotations

import os
from pathlib import Path

from step.data.base import DataBundle
from step.data.paths import data_root, download_guard, missing_error
from step.data.transforms import IMAGENET_MEAN, IMAGENET_STD, large_image_transform, small_image_transform
from step.registry import DATASETS


def _local_cifar(which: str):
    """torchvision's CIFAR readers with a presence check in place of the MD5 check, and the batches
    read by :mod:`step.data.safe_pickle` (arrays and plain data only: a crafted batch cannot run code).

    Built on first use, so that importing the dataset registry does not import torchvision.
    """
    import numpy as np
    from torchvision import datasets as tvd
    from torchvision.datasets.vision import VisionDataset

    from step.data import safe_pickle

    class LocalCIFAR10(tvd.CIFAR10):
        def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
            VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
            self.train = train
            if download:
                self.download()
            if not self._check_integrity():
                raise RuntimeError("Dataset not found or corrupted. You can use download=True to download it")
            data, self.targets = [], []
            for name, _ in self.train_list if train else self.test_list:
                entry = safe_pickle.load(os.path.join(self.root, self.base_folder, name))
                data.append(entry["data"])
                self.targets.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
            self.data = np.vstack(data).reshape(-1, 3, 32, 32).transpose((0, 2, 3, 1))  # HWC
            self._load_meta()

        def _check_integrity(self) -> bool:
            names = [n for n, _ in self.train_list + self.test_list] + [self.meta["filename"]]
            return all(os.path.isfile(os.path.join(self.root, self.base_folder, n)) for n in names)

        def _load_meta(self) -> None:
            meta = safe_pickle.load(os.path.join(self.root, self.base_folder, self.meta["filename"]))
            self.classes = meta[self.meta["key"]]
            self.class_to_idx = {c: i for i, c in enumerate(self.classes)}

    class LocalCIFAR100(LocalCIFAR10, tvd.CIFAR100):
        """The same for CIFAR-100 (fine labels)."""

    return {"cifar10": LocalCIFAR10, "cifar100": LocalCIFAR100}[which]


def _tv(name: str):
    from torchvision import datasets as tvd

    return getattr(tvd, name)


def _torchvision_set(
    name: str, cls, folder: str, files: list[str], url: str, root: str, download: bool, alternative: str,
    train_tf, test_tf,
):
    base = data_root(root, name)
    where = base / folder
    if not download and not all((where / f).is_file() for f in files):
        raise missing_error(name, files, where, url, can_download=True, alternative=alternative)
    with download_guard(name, files, where, url, alternative, download):
        try:
            train = cls(str(base), train=True, transform=train_tf, download=download)
            test = cls(str(base), train=False, transform=test_tf, download=False)
        except RuntimeError as err:  # torchvision's "Dataset not found" (files present but unreadable)
            if download:
                raise
            raise missing_error(name, files, where, url, can_download=True, alternative=alternative) from err
    return train, test


def _static_bundle(name, train, test, num_classes, in_chans, img_size, **info):
    return DataBundle(
        name=name, train=train, test=test, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
        modality="image", info={"n_train": len(train), "n_test": len(test), **info},
    )


def _stats(name: str, mean, std) -> tuple[list[float], list[float]]:
    """The channel mean and std a set normalises with: ``mean``/``std`` when given, else the set's own."""
    own_mean, own_std = STATS[name]
    mean = own_mean if mean is None else [float(m) for m in mean]
    std = own_std if std is None else [float(s) for s in std]
    if len(mean) != len(own_mean) or len(std) != len(own_std) or min(std) <= 0:
        raise ValueError(f"{name}: mean and std need {len(own_mean)} values (std > 0), got mean={mean}, std={std}")
    return list(mean), list(std)


def _small_set(name, cls, folder, files, url, native, num_classes, in_chans, alternative,
               root, download, img_size, augment, randaugment, reprob, hflip,
               crop_padding, normalize, mean, std, remode):
    mean, std = _stats(name, mean, std)
    kw = dict(img_size=img_size, native_size=native, augment=augment, randaugment=randaugment, reprob=reprob, hflip=hflip,
              crop_padding=crop_padding, normalize=normalize, mean=mean, std=std, remode=remode)
    train, test = _torchvision_set(
        name, cls, folder, files, url, root, download, alternative,
        small_image_transform(True, **kw), small_image_transform(False, **kw),
    )
    return _static_bundle(name, train, test, num_classes, in_chans, img_size,
                          augment=augment, normalize=bool(normalize), mean=mean, std=std)


CIFAR10_FILES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
CIFAR100_FILES = ["train", "test", "meta"]
MNIST_FILES = [f"{s}-{k}" for s in ("train", "t10k") for k in ("images-idx3-ubyte", "labels-idx1-ubyte")]
CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"


#: channel mean and std of each set (the values of the released recipes' configs; MNIST and
#: Fashion-MNIST: the usual ones of their training splits)
STATS = {
    "cifar10": ([0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]),
    "cifar100": ([0.5071, 0.4867, 0.4408], [0.2675, 0.2565, 0.2761]),
    "mnist": ([0.1307], [0.3081]),
    "fashion-mnist": ([0.2860], [0.3530]),
    "imagenet": (list(IMAGENET_MEAN), list(IMAGENET_STD)),
    "imagefolder": (list(IMAGENET_MEAN), list(IMAGENET_STD)),
}


@DATASETS.register("cifar10", paper="Krizhevsky 2009")
def cifar10(root: str, download: bool = False, img_size: int = 32, augment: str = "none",
            randaugment: str = "rand-m9-n1-mstd0.4-inc1", reprob: float = 0.0, hflip: float = 0.5,
            crop_padding: int = 4, normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
            remode: str = "const") -> DataBundle:
    """CIFAR-10 (50,000 / 10,000 RGB 32x32 images, 10 classes) from ``root/cifar-10-batches-py``."""
    return _small_set("cifar10", _local_cifar("cifar10"), "cifar-10-batches-py", CIFAR10_FILES, CIFAR_URL, 32, 10, 3, "digits",
                      root, download, img_size, augment, randaugment, reprob, hflip,
                      crop_padding, normalize, mean, std, remode)


@DATASETS.register("cifar100", paper="Krizhevsky 2009")
def cifar100(root: str, download: bool = False, img_size: int = 32, augment: str = "none",
             randaugment: str = "rand-m9-n1-mstd0.4-inc1", reprob: float = 0.0, hflip: float = 0.5,
             crop_padding: int = 4, normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
             remode: str = "const") -> DataBundle:
    """CIFAR-100 (50,000 / 10,000 RGB 32x32 images, 100 fine classes) from ``root/cifar-100-python``."""
    return _small_set("cifar100", _local_cifar("cifar100"), "cifar-100-python", CIFAR100_FILES, CIFAR_URL, 32, 100, 3, "digits",
                      root, download, img_size, augment, randaugment, reprob, hflip,
                      crop_padding, normalize, mean, std, remode)


@DATASETS.register("mnist", paper="LeCun et al. 1998")
def mnist(root: str, download: bool = False, img_size: int = 28, augment: str = "none",
          randaugment: str = "rand-m9-n1-mstd0.4-inc1", reprob: float = 0.0, hflip: float = 0.0,
          crop_padding: int = 3, normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
          remode: str = "const") -> DataBundle:
    """MNIST (60,000 / 10,000 grey 28x28 digits) from ``root/MNIST/raw``."""
    return _small_set("mnist", _tv("MNIST"), "MNIST/raw", MNIST_FILES, "http://yann.lecun.com/exdb/mnist/",
                      28, 10, 1, "digits", root, download, img_size, augment, randaugment, reprob, hflip,
                      crop_padding, normalize, mean, std, remode)


@DATASETS.register("fashion-mnist", paper="Xiao, Rasul & Vollgraf 2017")
def fashion_mnist(root: str, download: bool = False, img_size: int = 28, augment: str = "none",
                  randaugment: str = "rand-m9-n1-mstd0.4-inc1", reprob: float = 0.0, hflip: float = 0.5,
                  crop_padding: int = 3, normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
                  remode: str = "const") -> DataBundle:
    """Fashion-MNIST (60,000 / 10,000 grey 28x28 clothing images) from ``root/FashionMNIST/raw``."""
    return _small_set("fashion-mnist", _tv("FashionMNIST"), "FashionMNIST/raw", MNIST_FILES,
                      "https://github.com/zalandoresearch/fashion-mnist", 28, 10, 1, "digits", root, download, img_size,
                      augment, randaugment, reprob, hflip, crop_padding, normalize, mean, std, remode)


def _folder_set(name, base: Path, train_dir, test_dir, url, img_size, augment, randaugment, reprob, hflip,
                crop_pct, crop_scale, normalize, mean, std, remode, expected_classes=None):
    dirs = [base / train_dir, base / test_dir]
    if not all(d.is_dir() and any(p.is_dir() for p in d.iterdir()) for d in dirs):
        raise missing_error(name, [f"{train_dir}/<class>/<images>", f"{test_dir}/<class>/<images>"], base, url,
                            can_download=False, alternative="digits")
    mean, std = _stats(name, mean, std)
    kw = dict(img_size=img_size, augment=augment, randaugment=randaugment, reprob=reprob, hflip=hflip, crop_pct=crop_pct,
              crop_scale=crop_scale, normalize=normalize, mean=mean, std=std, remode=remode)
    train = _tv("ImageFolder")(str(dirs[0]), transform=large_image_transform(True, **kw))
    test = _tv("ImageFolder")(str(dirs[1]), transform=large_image_transform(False, **kw))
    if train.classes != test.classes:
        raise missing_error(name, [f"the same class folders in {train_dir}/ and {test_dir}/"], base, url,
                            can_download=False, alternative="digits")
    n = len(train.classes)
    if expected_classes is not None and n != expected_classes:
        raise missing_error(name, [f"{expected_classes} class folders in {train_dir}/ (found {n})"], base, url,
                            can_download=False, alternative="digits")
    return _static_bundle(name, train, test, n, 3, img_size, augment=augment, classes=list(train.classes),
                          normalize=bool(normalize), mean=mean, std=std)


@DATASETS.register("imagenet", paper="Deng et al. 2009 (ILSVRC-2012, 1,000 classes)")
def imagenet(root: str, img_size: int = 224, augment: str = "basic", randaugment: str = "rand-m9-mstd0.5-inc1",
             reprob: float = 0.0, hflip: float = 0.5, crop_pct: float = 0.875, crop_scale: list[float] = (0.08, 1.0),
             normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
             remode: str = "const") -> DataBundle:
    """ImageNet-1K as class folders under ``root/imagenet/{train,val}`` (val sorted into the 1,000 folders)."""
    return _folder_set("imagenet", data_root(root, "imagenet") / "imagenet", "train", "val",
                       "https://image-net.org/download.php (registration; sort val/ into class folders)", img_size,
                       augment, randaugment, reprob, hflip, crop_pct, crop_scale,
                       normalize, mean, std, remode, expected_classes=1000)


@DATASETS.register("imagefolder", paper="torchvision ImageFolder layout")
def imagefolder(root: str, path: str = "imagefolder", train_dir: str = "train", test_dir: str = "val",
                img_size: int = 224, augment: str = "basic", randaugment: str = "rand-m9-mstd0.5-inc1",
                reprob: float = 0.0, hflip: float = 0.5, crop_pct: float = 0.875, crop_scale: list[float] = (0.08, 1.0),
                normalize: bool = False, mean: list[float] | None = None, std: list[float] | None = None,
                remode: str = "const") -> DataBundle:
    """Any ``<path>/{train,val}/<class>/<image>`` tree under the data root (``path`` is relative to it;
    ``normalize`` uses ImageNet's mean and std unless ``mean``/``std`` are given)."""
    if os.path.isabs(path):
        raise ValueError(f"imagefolder: path must be relative to the data root, got {path!r}")
    return _folder_set("imagefolder", data_root(root, "imagefolder") / path, train_dir, test_dir,
                       "your own images (one folder per class)", img_size, augment, randaugment, reprob, hflip,
                       crop_pct, crop_scale, normalize, mean, std, remode)
