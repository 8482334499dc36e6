"""Static image datasets written in their real on-disk formats and read through the real loaders."""

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from step.errors import DatasetMissingError
from step.registry import DATASETS


def write_cifar10(root, n=4):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    batches = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(n)]
        batches[name] = (data, labels)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f)
    return batches


def write_cifar100(root, n=3):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    out = {}
    for name, size in (("train", 2 * n), ("test", n)):
        data = rng.integers(0, 256, size=(size, 3072), dtype=np.uint8)
        fine = [(7 * j + 50) % 100 for j in range(size)]
        out[name] = (data, fine)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "fine_labels": fine, "coarse_labels": [j % 20 for j in fine]}, f)
    with open(folder / "meta", "wb") as f:
        pickle.dump({"fine_label_names": [f"f{k}" for k in range(100)], "coarse_label_names": []}, f)
    return out


def write_idx(raw, prefix, images, labels):
    raw.mkdir(parents=True, exist_ok=True)
    n = len(images)
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.astype(np.uint8).tobytes())


def write_mnist(root, folder="MNIST"):
    rng = np.random.default_rng(2)
    sets = {}
    for prefix, n in (("train", 5), ("t10k", 3)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n) % 10
        write_idx(root / folder / "raw", prefix, images, labels)
        sets[prefix] = (images, labels)
    return sets


def test_cifar10_pickles(tmp_path):
    batches = write_cifar10(tmp_path)
    bundle = DATASETS.build("cifar10", root=str(tmp_path))
    assert (len(bundle.train), len(bundle.test), bundle.num_classes, bundle.in_chans) == (20, 4, 10, 3)
    data, labels = batches["test_batch"]
    x, y = bundle.test[2]
    assert x.shape == (3, 32, 32) and y == labels[2]
    # CIFAR rows are [R(1024) G(1024) B(1024)], raster order; values scaled to [0, 1], not normalised
    expected = torch.from_numpy(data[2].reshape(3, 32, 32).astype(np.float32) / 255)
    assert torch.allclose(x, expected)
    x_train, y_train = bundle.train[4]  # first image of data_batch_2
    assert y_train == batches["data_batch_2"][1][0]


def test_cifar100_pickles_fine_labels(tmp_path):
    sets = write_cifar100(tmp_path)
    bundle = DATASETS.build("cifar100", root=str(tmp_path))
    assert bundle.num_classes == 100 and len(bundle.train) == 6 and len(bundle.test) == 3
    assert [bundle.test[i][1] for i in range(3)] == sets["test"][1]


def test_cifar10_recipe_transforms_stay_in_unit_range(tmp_path):
    write_cifar10(tmp_path)
    bundle = DATASETS.build("cifar10", root=str(tmp_path), augment="randaugment", reprob=1.0)
    torch.manual_seed(0)
    x, _ = bundle.train[0]
    assert x.shape == (3, 32, 32) and x.min() >= 0 and x.max() <= 1
    assert (x == 0).all(dim=0).any()  # random erasing with probability 1 blanked a box
    x_test, _ = bundle.test[0]  # test split is never augmented
    assert torch.equal(x_test, DATASETS.build("cifar10", root=str(tmp_path)).test[0][0])


def test_mnist_and_fashion_idx_files(tmp_path):
    sets = write_mnist(tmp_path)
    bundle = DATASETS.build("mnist", root=str(tmp_path))
    assert (len(bundle.train), len(bundle.test), bundle.in_chans, bundle.img_size) == (5, 3, 1, 28)
    x, y = bundle.train[3]
    assert x.shape == (1, 28, 28) and y == 3
    assert torch.allclose(x[0], torch.from_numpy(sets["train"][0][3].astype(np.float32) / 255))
    write_mnist(tmp_path, "FashionMNIST")
    fashion = DATASETS.build("fashion-mnist", root=str(tmp_path), img_size=32)
    assert fashion.test[0][0].shape == (1, 32, 32)


def test_sequential_sets_from_the_static_files(tmp_path):
    sets = write_mnist(tmp_path)
    write_cifar10(tmp_path)
    s = DATASETS.build("smnist", root=str(tmp_path))
    x, y = s.train[1]
    assert s.seq_len == 784 and x.shape == (784, 1) and y == 1
    assert torch.allclose(x[:, 0], torch.from_numpy(sets["train"][0][1].reshape(-1).astype(np.float32) / 255))
    p = DATASETS.build("psmnist", root=str(tmp_path), permutation_seed=5)
    from step.data.sequences import fixed_permutation

    assert torch.equal(p.train[1][0][:, 0], x[fixed_permutation(784, 5), 0])
    c = DATASETS.build("scifar10", root=str(tmp_path))
    assert c.seq_len == 1024 and c.in_chans == 3 and c.test[0][0].shape == (1024, 3)


def test_imagefolder_of_pngs(tmp_path):
    for split, n in (("train", 3), ("val", 2)):
        for k, cls in enumerate(["ant", "bee"]):
            folder = tmp_path / "my" / "pets" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((40, 48, 3), 60 * k + i, dtype=np.uint8)).save(folder / f"{i}.png")
    bundle = DATASETS.build("imagefolder", root=str(tmp_path), path="my/pets", img_size=32, augment="randaugment",
                            reprob=0.5)
    assert bundle.num_classes == 2 and len(bundle.train) == 6 and len(bundle.test) == 4
    x, y = bundle.test[2]  # val/bee/0.png: constant 60
    assert x.shape == (3, 32, 32) and y == 1
    assert torch.allclose(x, torch.full_like(x, 60 / 255), atol=1e-6)
    xt, yt = bundle.train[0]
    assert xt.shape == (3, 32, 32) and yt == 0 and 0 <= xt.min() and xt.max() <= 1
    with pytest.raises(DatasetMissingError, match="train/<class>"):
        DATASETS.build("imagefolder", root=str(tmp_path), path="nowhere")


def test_missing_cifar_message_says_what_where_how_and_instead(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS.build("cifar10", root=str(tmp_path))
    msg = str(err.value)
    assert "data_batch_1" in msg and "batches.meta" in msg and str(tmp_path / "cifar-10-batches-py") in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "dataset.download=true" in msg
    assert "dataset=digits" in msg and "\n" not in msg
    with pytest.raises(DatasetMissingError, match="image-net.org") as err:
        DATASETS.build("imagenet", root=str(tmp_path))
    assert "download=true" not in str(err.value)


def test_build_mixup_mixes_images_and_smoothed_targets():
    from step.data.mixup import build_mixup

    assert build_mixup(10) is None and build_mixup(10, mixup_alpha=1.0, prob=0.0) is None
    mixer = build_mixup(5, mixup_alpha=1.0, label_smoothing=0.1)
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 1, 2, 2).clone()
    y = torch.tensor([0, 1, 2, 3])
    xm, ym = mixer(x.clone(), y)
    lam = 1.0 - xm[0, 0, 0, 0].item() / 3.0  # x_0 = 0 mixed with its flipped partner x_3 = 3
    torch.testing.assert_close(xm[1, 0, 0, 0], torch.tensor(lam * 1 + (1 - lam) * 2))
    off, on = 0.1 / 5, 1 - 0.1 + 0.1 / 5
    expected0 = torch.full((5,), off)
    expected0[0] = lam * on + (1 - lam) * off
    expected0[3] = lam * off + (1 - lam) * on
    torch.testing.assert_close(ym[0], expected0)
    torch.testing.assert_close(ym.sum(1), torch.ones(4))


def test_download_true_fetches_from_the_official_url(tmp_path, monkeypatch):
    """dataset.download=true reaches torchvision's fetcher (stubbed: this machine is offline)."""
    import torchvision.datasets.cifar as tv_cifar

    fetched = []

    def fake_fetch(url, download_root, filename=None, md5=None, **_):
        fetched.append((url, filename))
        write_cifar10(Path(download_root))

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", fake_fetch)
    bundle = DATASETS.build("cifar10", root=str(tmp_path), download=True)
    assert fetched == [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz")]
    assert len(bundle.train) == 5 * 4 and len(bundle.test) == 4
    again = DATASETS.build("cifar10", root=str(tmp_path), download=True)  # present: nothing fetched again
    assert len(fetched) == 1 and len(again.test) == 4


def test_failed_download_gives_the_missing_dataset_message(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError) as err:
        DATASETS.build("cifar10", root=str(tmp_path), download=True)
    msg = str(err.value)
    assert "download=true was set but fetching it failed" in msg and "URLError" in msg
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in msg and "dataset=digits" in msg
