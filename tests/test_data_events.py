"""Event datasets written in the formats tonic reads, loaded through the real tonic path."""

import struct

import numpy as np
import pytest
import torch

from step.errors import DatasetMissingError
from step.registry import DATASETS


def nmnist_bytes(x, y, p, t):
    """N-MNIST / N-Caltech101 .bin: 5 bytes per event (x, y, p<<7 | t[22:16], t[15:8], t[7:0])."""
    raw = np.zeros((len(x), 5), dtype=np.uint8)
    t = np.asarray(t)
    raw[:, 0], raw[:, 1] = x, y
    raw[:, 2] = (np.asarray(p) << 7) | ((t >> 16) & 127)
    raw[:, 3], raw[:, 4] = (t >> 8) & 255, t & 255
    return raw.tobytes()


def aedat4_bytes(x, y, p, t, width=128, height=128):
    """An AEDAT 4.0 file (DV's format, CIFAR10-DVS's release): magic line, the IOHeader flatbuffer
    (no compression; an XML description with one EVTS stream of width x height) and one packet
    holding a size-prefixed EventPacket flatbuffer of Event structs {t: i64, x: i16, y: i16, on: bool}.
    """
    desc = ('<dv version="2.0"><node name="outInfo" path="/mainloop/Recorder/outInfo/">'
            '<node name="0" path="/mainloop/Recorder/outInfo/0/">'
            '<attr key="typeIdentifier" type="string">EVTS</attr>'
            '<node name="info" path="/mainloop/Recorder/outInfo/0/info/">'
            f'<attr key="sizeX" type="int">{width}</attr><attr key="sizeY" type="int">{height}</attr>'
            '</node></node></node></dv>').encode()
    # IOHeader: root offset, "IOHE", vtable (10 bytes: compression and data position left at their
    # defaults, description at +4) padded to 12, then the table (soffset 12 back to the vtable)
    header = struct.pack("<I4s", 20, b"IOHE") + struct.pack("<5H", 10, 8, 0, 0, 4) + b"\0\0"
    header += struct.pack("<iI", 12, 4) + struct.pack("<I", len(desc)) + desc + b"\0"
    header += b"\0" * (-len(header) % 4)
    # EventPacket: root offset, "EVTS", vtable (elements at +4), table, vector length at an offset
    # that puts the 16-byte, 8-aligned structs on an 8-byte boundary of the size-prefixed buffer
    body = struct.pack("<I4s", 16, b"EVTS") + struct.pack("<3H", 6, 8, 4) + b"\0\0"
    body += struct.pack("<iI", 8, 4) + struct.pack("<I", len(x))
    body += b"".join(struct.pack("<qhh?3x", ti, xi, yi, bool(pi)) for xi, yi, pi, ti in zip(x, y, p, t))
    packet = struct.pack("<I", len(body)) + body
    return (b"#!AER-DAT4.0\r\n" + struct.pack("<I", len(header)) + header
            + struct.pack("<II", 0, len(packet)) + packet)


# events (x, y, p, t): the first two fall in time bin 0 of 2, the third in bin 1
EVENTS = ([1, 3, 5, 7], [2, 4, 6, 8], [1, 0, 1, 1], [0, 100, 600, 1000])


def write_nmnist(root):
    for split, digits in (("Train", (3, 7)), ("Test", (3,))):
        for d in digits:
            folder = root / "NMNIST" / split / str(d)
            folder.mkdir(parents=True)
            (folder / "00001.bin").write_bytes(nmnist_bytes(*EVENTS))


def check_two_bin_frames(x, size, scale=1.0):
    xs, ys, ps, _ = EVENTS
    assert x.shape == (2, 2, size, size) and x.dtype == torch.float32
    for k, b in ((0, 0), (1, 0), (2, 1)):
        assert x[b, ps[k], int(ys[k] * scale), int(xs[k] * scale)] == 1
    assert x[0].sum() == 2 and x[1].sum() >= 1


def test_nmnist_bin_files_to_frames_and_cache(tmp_path):
    write_nmnist(tmp_path)
    bundle = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2)
    assert bundle.modality == "event" and bundle.timesteps == 2 and bundle.in_chans == 2
    assert (len(bundle.train), len(bundle.test)) == (2, 1)
    x, y = bundle.train[1]
    assert y == 7
    check_two_bin_frames(x, 34)
    cached = list((tmp_path / "cache" / "nmnist").rglob("*.npy"))
    assert len(cached) == 1
    again = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2).train[1][0]
    assert torch.equal(again, x)
    down = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, img_size=17, cache=False)
    check_two_bin_frames(down.test[0][0], 17, scale=0.5)


def test_nmnist_frames_by_event_number(tmp_path):
    write_nmnist(tmp_path)
    x, _ = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, split_by="number", cache=False).test[0]
    assert x.shape == (2, 2, 34, 34) and x[0].sum() == 2 and x[1].sum() == 2


def test_dvs_gesture_npy_files(tmp_path):
    xs, ys, ps, ts = EVENTS
    for split, user in (("ibmGestureTrain", "user01_fluorescent"), ("ibmGestureTest", "user24_led")):
        folder = tmp_path / "DVSGesture" / split / user
        folder.mkdir(parents=True)
        for label in (0, 10):
            # tonic's preprocessed copy: [N, 4] columns x, y, p, t in milliseconds
            np.save(folder / f"{label}.npy", np.stack([xs, ys, ps, np.asarray(ts) // 100], 1).astype(np.int64))
    bundle = DATASETS.build("dvs-gesture", root=str(tmp_path), timesteps=2, img_size=64, cache=False)
    assert bundle.num_classes == 11 and len(bundle.train) == 2
    labels = sorted(bundle.test[i][1] for i in range(2))
    assert labels == [0, 10]
    check_two_bin_frames(bundle.train[0][0], 64, scale=0.5)


def test_n_caltech101_per_class_split(tmp_path):
    for cls in ("BACKGROUND_Google", "accordion", "yin_yang"):
        folder = tmp_path / "NCALTECH101" / "Caltech101" / cls
        folder.mkdir(parents=True)
        for i in range(10):
            # tonic shifts x and y so that their minimum is 0: offsets 10 and 20 disappear
            (folder / f"image_{i:04d}.bin").write_bytes(nmnist_bytes([10 + 1, 10 + 3, 10 + 5, 10 + 7],
                                                                   [20 + 2, 20 + 4, 20 + 6, 20 + 8], *EVENTS[2:]))
    bundle = DATASETS.build("n-caltech101", root=str(tmp_path), timesteps=2, img_size=240, cache=False)
    assert bundle.num_classes == 2 and bundle.info["classes"] == ["accordion", "yin_yang"]
    assert (len(bundle.train), len(bundle.test)) == (18, 2)
    assert sorted(y for _, y in (bundle.test[i] for i in range(2))) == [0, 1]
    x, _ = bundle.test[0]
    assert x.shape == (2, 2, 240, 240)
    # x scaled by 240/240, y by 240/180: events land on (x-11, floor((y-22) * 4/3))
    assert x[0, 1, 0, 0] == 1 and x[0, 0, int(2 * 240 / 180), 2] == 1


def test_cifar10_dvs_aedat4_files(tmp_path):
    pytest.importorskip("aedat")
    for cls in ("airplane", "truck"):
        folder = tmp_path / "CIFAR10DVS" / cls
        folder.mkdir(parents=True)
        for i in range(10):
            (folder / f"cifar10_{cls}_{i}.aedat4").write_bytes(aedat4_bytes(*EVENTS))
    bundle = DATASETS.build("cifar10-dvs", root=str(tmp_path), timesteps=2, img_size=128)
    # CIFAR-10's label order whatever classes are present: airplane 0, truck 9
    assert bundle.modality == "event" and bundle.in_chans == 2 and bundle.num_classes == 10
    assert bundle.info["classes"][0] == "airplane" and bundle.info["classes"][9] == "truck"
    assert (len(bundle.train), len(bundle.test)) == (18, 2)
    assert sorted(y for _, y in (bundle.test[i] for i in range(2))) == [0, 9]
    x, _ = bundle.test[0]
    check_two_bin_frames(x, 128)
    assert list((tmp_path / "cache").rglob("*.npy"))  # binned frames cached on first read
    half = DATASETS.build("cifar10-dvs", root=str(tmp_path), timesteps=2, img_size=64, cache=False)
    check_two_bin_frames(half.train[0][0], 64, scale=0.5)


def test_shd_h5_as_sequences(tmp_path):
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "SHD"
    folder.mkdir()
    for split, labels in (("train", [3, 19]), ("test", [5])):
        with h5py.File(folder / f"shd_{split}.h5", "w") as f:
            times = f.create_dataset("spikes/times", (len(labels),), dtype=h5py.vlen_dtype(np.float32))
            units = f.create_dataset("spikes/units", (len(labels),), dtype=h5py.vlen_dtype(np.uint16))
            for i in range(len(labels)):
                times[i] = np.array([0.0, 0.1, 0.6, 1.0], dtype=np.float32)  # seconds
                units[i] = np.array([0, 699, 350, 350], dtype=np.uint16)
            f["labels"] = np.array(labels, dtype=np.uint8)
            f["extra/keys"] = np.array([b"k"] * 20)
            f["extra/speaker"] = np.zeros(len(labels), dtype=np.uint8)
    bundle = DATASETS.build("shd", root=str(tmp_path), seq_len=2, cache=False)
    assert bundle.modality == "sequence" and bundle.in_chans == 700 and bundle.num_classes == 20
    x, y = bundle.train[1]
    assert y == 19 and x.shape == (2, 700)
    assert x[0, 0] == 1 and x[0, 699] == 1 and x[1, 350] >= 1


@pytest.mark.parametrize("name,expected,url,alt", [
    ("nmnist", "Train/.../*.bin", "garrickorchard.com/datasets/n-mnist", "digits-dvs"),
    ("dvs-gesture", "ibmGestureTrain", "research.ibm.com", "digits-dvs"),
    ("cifar10-dvs", "*.aedat4", "figshare.com", "digits-dvs"),
    ("n-caltech101", "<class>/*.bin", "garrickorchard.com/datasets/n-caltech101", "digits-dvs"),
    ("shd", "shd_train.h5", "zenkelab.org", "mnist1d"),
])
def test_missing_event_dataset_message(tmp_path, name, expected, url, alt):
    with pytest.raises(DatasetMissingError) as err:
        DATASETS.build(name, root=str(tmp_path))
    msg = str(err.value)
    assert expected in msg and str(tmp_path) in msg and url in msg
    assert "dataset.download=true" in msg and f"dataset={alt}" in msg
    assert not any(tmp_path.iterdir())  # nothing was downloaded or written


def test_event_download_true_reaches_tonic_and_failures_give_one_message(tmp_path, monkeypatch):
    """dataset.download=true hands over to tonic's fetcher (stubbed: this machine is offline)."""
    import urllib.error

    import tonic.dataset

    fetched = []

    def fake_fetch(url, download_root, filename=None, md5=None, **_):
        fetched.append(filename)
        if not any(tmp_path.glob("NMNIST/*/*")):
            write_nmnist(tmp_path)

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fake_fetch)
    bundle = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, download=True, cache=False)
    assert "train.zip" in fetched and (len(bundle.train), len(bundle.test)) == (2, 1)

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError, match="fetching it failed .URLError") as err:
        DATASETS.build("dvs-gesture", root=str(tmp_path / "empty"), download=True)
    assert "dataset=digits-dvs" in str(err.value)
