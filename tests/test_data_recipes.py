"""The data side of the released recipes: normalisation, the CIFAR crop, random erasing on
normalised tensors, the SNN RandAugment subset, event binning by count and the DVS augmentations.

Expected values are computed by hand here or taken from the library the feature mirrors
(SpikingJelly's frame integration, timm's operations).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from step.config import compose, validate_config
from step.data.event_augment import NUM_BINS, TRIVIAL_OPS, EventTrivialAugment, apply_op, event_augmentation
from step.data.events import FramesByNumber
from step.data.transforms import SNN_RAND_OPS, fill_colour, small_image_transform
from step.engine import builders, run
from step.errors import ConfigError
from step.registry import DATASETS

from test_data_events import EVENTS, write_nmnist
from test_data_vision import write_cifar10

CIFAR10_MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)  # the released cifar10.yml values
CIFAR10_STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(3, 1, 1)


def raw_cifar_image(batches, name, i):
    return torch.from_numpy(batches[name][0][i].reshape(3, 32, 32).astype(np.float32) / 255)


# --- images ---------------------------------------------------------------------------------------

def test_normalize_standardises_with_the_dataset_mean_and_std(tmp_path):
    batches = write_cifar10(tmp_path)
    bundle = DATASETS.build("cifar10", root=str(tmp_path), normalize=True)
    x, _ = bundle.test[1]
    expected = (raw_cifar_image(batches, "test_batch", 1) - CIFAR10_MEAN) / CIFAR10_STD
    torch.testing.assert_close(x, expected, rtol=0, atol=1e-6)
    assert bundle.info["normalize"] is True and bundle.info["mean"] == [0.4914, 0.4822, 0.4465]
    own = DATASETS.build("cifar10", root=str(tmp_path), normalize=True, mean=[0.5, 0.5, 0.5], std=[0.25] * 3)
    torch.testing.assert_close(own.test[1][0], (raw_cifar_image(batches, "test_batch", 1) - 0.5) / 0.25)
    with pytest.raises(ValueError, match="3 values"):
        DATASETS.build("cifar10", root=str(tmp_path), normalize=True, mean=[0.5])


def test_crop_padding_zero_is_no_crop_and_four_is_a_shift_of_the_zero_padded_image(tmp_path):
    batches = write_cifar10(tmp_path)
    original = raw_cifar_image(batches, "data_batch_1", 0)
    plain = DATASETS.build("cifar10", root=str(tmp_path), augment="basic", hflip=0.0, crop_padding=0)
    for seed in range(3):
        torch.manual_seed(seed)
        assert torch.equal(plain.train[0][0], original)
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
    cropped = DATASETS.build("cifar10", root=str(tmp_path), augment="basic", hflip=0.0, crop_padding=4)
    shifts = set()
    for seed in range(12):
        torch.manual_seed(seed)
        x = cropped.train[0][0]
        match = [(dy, dx) for dy in range(9) for dx in range(9) if torch.equal(x, padded[:, dy:dy + 32, dx:dx + 32])]
        assert match, "the crop is not a 32x32 window of the 4-pixel zero-padded image"
        shifts.add(match[0])
    assert len(shifts) > 1


@pytest.mark.parametrize("remode", ["const", "rand", "pixel"])
def test_random_erasing_acts_on_the_normalised_tensor(tmp_path, remode):
    write_cifar10(tmp_path)
    clean = DATASETS.build("cifar10", root=str(tmp_path), normalize=True).train[0][0]
    erased_set = DATASETS.build("cifar10", root=str(tmp_path), normalize=True, reprob=1.0, remode=remode)
    torch.manual_seed(0)
    x = erased_set.train[0][0]
    box = (x != clean).any(0)
    assert box.any()
    inside = x[:, box]
    if remode == "const":  # zero on the standardised scale: the mean colour of the raw image
        assert torch.equal(inside, torch.zeros_like(inside))
        raw = x * CIFAR10_STD + CIFAR10_MEAN
        torch.testing.assert_close(raw[:, box], CIFAR10_MEAN.view(3, 1).expand_as(inside), rtol=0, atol=1e-6)
    elif remode == "rand":  # one normal colour per channel for the whole box
        assert all(torch.unique(inside[c]).numel() == 1 for c in range(3))
    else:  # fresh normal noise per pixel
        assert torch.unique(inside[0]).numel() == inside.shape[1]
    with pytest.raises(ValueError, match="remode"):
        DATASETS.build("cifar10", root=str(tmp_path), reprob=1.0, remode="zeros")


def test_snn_randaugment_keeps_the_five_released_operations(tmp_path):
    transform = small_image_transform(True, 32, 32, augment="randaugment", randaugment="snn-rand-m9-n1-mstd0.4-inc1",
                                      crop_padding=0, mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
    ra = next(t for t in transform.transforms if type(t).__name__ == "RandAugment")
    # Spikformer's cifar10/aa_snn.py keeps Equalize, Rotate, ShearX, TranslateXRel and TranslateYRel
    assert [op.name for op in ra.ops] == ["Equalize", "Rotate", "ShearX", "TranslateXRel", "TranslateYRel"]
    assert list(SNN_RAND_OPS) == [op.name for op in ra.ops]
    assert ra.num_layers == 1 and ra.choice_weights is None
    for op in ra.ops:
        assert (op.prob, op.magnitude, op.magnitude_std) == (0.5, 9, 0.4)
        # the fill colour is the CIFAR-10 mean in 8 bits: round(255 * 0.4914) = 125, 122.96 -> 123, 113.86 -> 114
        assert op.kwargs["fillcolor"] == (125, 123, 114)
    assert fill_colour([0.4914, 0.4822, 0.4465]) == (125, 123, 114)
    full = small_image_transform(True, 32, 32, augment="randaugment", randaugment="rand-m9-n1-mstd0.4-inc1")
    full_ra = next(t for t in full.transforms if type(t).__name__ == "RandAugment")
    assert len(full_ra.ops) > 5 and {"Invert", "SolarizeIncreasing"} <= {op.name for op in full_ra.ops}
    # a grey 8-bit image rotated by the SNN subset shows the fill colour in its corners
    rotate = next(op for op in ra.ops if op.name == "Rotate")
    rotate.magnitude_std, rotate.prob = 0.0, 1.0
    out = np.asarray(rotate(Image.new("RGB", (32, 32), (255, 255, 255))))
    assert tuple(out[0, 0]) == (125, 123, 114)
    with pytest.raises(ValueError, match="snn-"):
        small_image_transform(True, 32, 32, augment="randaugment", randaugment="snn-5op")


def test_imagenet_transforms_take_the_crop_scale_and_eval_crop(tmp_path):
    from step.data.transforms import large_image_transform

    test = large_image_transform(False, 224, crop_pct=0.95, normalize=True)
    assert test.transforms[0].size == 235  # floor(224 / 0.95), SDT's eval resize
    train = large_image_transform(True, 224, augment="randaugment", randaugment="rand-m7-mstd0.5-inc1",
                                  crop_scale=(1.0, 1.0), normalize=True, reprob=0.25, remode="pixel")
    assert train.transforms[0].scale == (1.0, 1.0)
    names = [type(t).__name__ for t in train.transforms]
    assert names.index("RandAugment") < names.index("Normalize") < names.index("RandomErasing")
    assert train.transforms[-1].mode == "pixel"


def test_normalize_is_refused_with_intensity_encoders_before_anything_runs(isolated_roots):
    ok = compose(["dataset=cifar10", "dataset.normalize=true", "encoder=direct"])
    validate_config(ok)
    for encoder in ("rate", "latency", "phase", "delta"):
        cfg = compose(["dataset=cifar10", "dataset.normalize=true", f"encoder={encoder}"])
        with pytest.raises(ConfigError, match=f"encoder '{encoder}' codes intensities in \\[0, 1\\]"):
            run(cfg)
    with pytest.raises(ConfigError, match="remode=pixel"):
        validate_config(compose(["dataset=cifar10", "dataset.reprob=0.25", "dataset.remode=pixel", "encoder=rate"]))
    assert not (isolated_roots / "outputs" / "runs").exists()  # refused before a run folder was made


def test_the_model_receives_normalised_images_through_the_runner(isolated_roots, monkeypatch):
    batches = write_cifar10(isolated_roots / "data")
    seen = []
    build = builders.build_model

    def recording(cfg, bundle):
        model = build(cfg, bundle)
        model.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()) if m.training else None)
        return model

    monkeypatch.setattr(builders, "build_model", recording)
    run(compose(["dataset=cifar10", "dataset.augment=none", "dataset.normalize=true", f"paths.data_root={isolated_roots / 'data'}",
                 "model.depth=1", "model.dim=16", "model.heads=2", "model.patch_size=4", "T=2", "trainer.epochs=1",
                 "trainer.batch_size=32", "trainer.max_batches=1", "trainer.progress=false", "energy.enabled=false"]))
    x = seen[0]  # [T, B, 3, 32, 32]: all 20 training images, direct-encoded
    assert x.shape == (2, 20, 3, 32, 32) and torch.equal(x[0], x[1])
    names = [f"data_batch_{k}" for k in range(1, 6)]
    expected = torch.stack([(raw_cifar_image(batches, n, i) - CIFAR10_MEAN) / CIFAR10_STD for n in names for i in range(4)])
    order = lambda t: t.flatten(1).sum(1).argsort()  # noqa: E731 - the loader shuffles: compare as sets
    torch.testing.assert_close(x[0][order(x[0])], expected[order(expected)], rtol=0, atol=1e-5)


# --- events ---------------------------------------------------------------------------------------

def random_events(n, size=5, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=[("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    ev["x"], ev["y"] = rng.integers(0, size, n), rng.integers(0, size, n)
    ev["t"], ev["p"] = np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n)
    return ev


@pytest.mark.parametrize("n,T", [(23, 4), (8, 4), (3, 4), (101, 7)])
def test_binning_by_number_equals_spikingjelly(n, T):
    sj = pytest.importorskip("spikingjelly.datasets")
    ev = random_events(n)
    ours = FramesByNumber((5, 5, 2), T)(ev)
    theirs = sj.integrate_events_by_fixed_frames_number(
        {"t": ev["t"], "x": ev["x"], "y": ev["y"], "p": ev["p"]}, "number", T, 5, 5)
    np.testing.assert_array_equal(ours, theirs)
    # by hand: frame i counts events [i * (n // T), (i + 1) * (n // T)), the last one takes the rest
    k = n // T
    assert [int(ours[i].sum()) for i in range(T)] == [k] * (T - 1) + [n - k * (T - 1)]


def test_event_dataset_binned_by_number_through_the_loader(tmp_path):
    write_nmnist(tmp_path)
    x, _ = DATASETS.build("nmnist", root=str(tmp_path), timesteps=3, split_by="number", cache=False).test[0]
    xs, ys, ps, _ = EVENTS  # 4 events, 3 frames: 1, 1, then 2 (the remainder)
    assert [int(x[i].sum()) for i in range(3)] == [1, 1, 2]
    assert x[2, ps[3], ys[3], xs[3]] == 1 and x[0, ps[0], ys[0], xs[0]] == 1


def test_event_policy_operations_by_hand():
    frames = torch.zeros(3, 2, 9, 9)
    frames[:, 1, 4, 4] = 1.0  # one event per bin at the centre, polarity 1
    frames[0, 0, 4, 6] = 2.0
    assert torch.equal(apply_op(frames, "Identity", 0.0), frames)
    right = apply_op(frames, "TranslateX", 2.9)  # truncated to 2 pixels
    assert right[:, 1, 4, 6].eq(1).all() and right[0, 0, 4, 8] == 2 and right.sum() == frames.sum()
    down = apply_op(frames, "TranslateY", -3.0)
    assert down[:, 1, 1, 4].eq(1).all()
    turned = apply_op(frames, "Rotate", 90.0)  # counter-clockwise: (row 4, col 6) -> (row 2, col 4)
    assert turned[0, 0, 2, 4] == 2 and turned[:, 1, 4, 4].eq(1).all()
    torch.manual_seed(0)
    block = apply_op(torch.ones(3, 2, 40, 40), "Cutout", 0.0)
    hole = block[0, 0] == 0
    rows, cols = hole.any(1).sum().item(), hole.any(0).sum().item()
    assert rows == cols and rows * cols == hole.sum() and 0.001 * 1600 <= hole.sum() <= 0.11 * 1600
    assert (block == 0).all(0).all(0).eq(hole).all()  # the same box in every bin and polarity


def test_event_policy_draws_the_released_operations_and_magnitudes(monkeypatch):
    assert list(TRIVIAL_OPS) == ["Identity", "ShearX", "TranslateX", "TranslateY", "Rotate", "Cutout"]
    assert {k: v[0] for k, v in TRIVIAL_OPS.items() if v[1]} == {"ShearX": 0.3, "TranslateX": 5.0, "TranslateY": 5.0,
                                                                  "Rotate": 30.0}
    calls = []
    monkeypatch.setattr("step.data.event_augment.apply_op", lambda f, op, m: calls.append((op, m)) or f)
    torch.manual_seed(1)
    for _ in range(600):
        EventTrivialAugment()(torch.zeros(1, 2, 4, 4))
    ops = {op for op, _ in calls}
    assert ops == set(TRIVIAL_OPS)
    rotations = sorted({round(m, 4) for op, m in calls if op == "Rotate"})
    grid = {round(v, 4) for v in np.linspace(-30, 30, NUM_BINS)}
    assert set(rotations) <= grid and len(rotations) > 15 and min(rotations) < 0 < max(rotations)
    assert all(m == 0.0 for op, m in calls if op in ("Identity", "Cutout"))


def test_event_augment_applies_to_training_frames_only(tmp_path):
    write_nmnist(tmp_path)
    plain = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, cache=False)
    flipped = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, cache=False, augment="flip")
    assert torch.equal(flipped.test[0][0], plain.test[0][0])
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        x = flipped.train[0][0]
        assert torch.equal(x, plain.train[0][0]) or torch.equal(x, plain.train[0][0].flip(-1))
        seen.add(torch.equal(x, plain.train[0][0]))
    assert seen == {True, False}
    assert flipped.info["augment"] == "flip" and event_augmentation("none") is None
    with pytest.raises(ValueError, match="flip-trivial"):
        event_augmentation("trivial")
    both = DATASETS.build("nmnist", root=str(tmp_path), timesteps=2, cache=False, augment="flip-trivial")
    torch.manual_seed(0)
    x = both.train[0][0]
    assert x.shape == (2, 2, 34, 34) and math.isclose(float(x.min()), 0.0)


def test_imagefolder_builder_takes_the_crop_keys(tmp_path):
    for split in ("train", "val"):
        for k, cls in enumerate(["ant", "bee"]):
            folder = tmp_path / "pets" / split / cls
            folder.mkdir(parents=True)
            Image.fromarray(np.full((40, 48, 3), 60 * k + 10, dtype=np.uint8)).save(folder / "0.png")
    bundle = DATASETS.build("imagefolder", root=str(tmp_path), path="pets", img_size=32, crop_pct=0.95,
                            crop_scale=[1.0, 1.0], normalize=True)
    test_ops, train_ops = bundle.test.transform.transforms, bundle.train.transform.transforms
    assert test_ops[0].size == 33  # floor(32 / 0.95)
    assert train_ops[0].scale == (1.0, 1.0)
    x, y = bundle.test[1]  # bee: constant 70 in every channel, standardised with ImageNet's statistics
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(x[:, 5, 5], (70 / 255 - mean) / std, rtol=0, atol=1e-5)


def test_sequences_normalise_the_images_before_reading_them(tmp_path):
    from test_data_vision import write_mnist

    sets = write_mnist(tmp_path)
    plain = DATASETS.build("smnist", root=str(tmp_path)).train[1][0]
    normed = DATASETS.build("smnist", root=str(tmp_path), normalize=True).train[1][0]
    raw = torch.from_numpy(sets["train"][0][1].reshape(-1).astype(np.float32) / 255)
    torch.testing.assert_close(plain[:, 0], raw)
    torch.testing.assert_close(normed[:, 0], (raw - 0.1307) / 0.3081, rtol=0, atol=1e-5)
