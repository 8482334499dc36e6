"""digits-hard: each corruption checked on its own against the plain digits, sizes, determinism."""

from __future__ import annotations

import torch

from step.registry import DATASETS


def tensors(bundle, split="train"):
    return getattr(bundle, split).tensors


def test_without_corruption_it_is_the_plain_digits():
    hard = DATASETS.build("digits-hard", digit_px=16, occlude_px=0, noise_std=0.0, train_copies=1, test_copies=1)
    plain = DATASETS.build("digits")
    for split in ("train", "test"):
        (xh, yh), (xp, yp) = tensors(hard, split), tensors(plain, split)
        assert torch.equal(yh, yp) and torch.allclose(xh, xp, atol=1e-6)


def test_jitter_only_moves_the_whole_digit():
    hard = DATASETS.build("digits-hard", digit_px=12, occlude_px=0, noise_std=0.0, train_copies=2, test_copies=1)
    small = DATASETS.build("digits", img_size=12)
    x, y = tensors(hard)
    xs, ys = tensors(small)
    assert torch.equal(y, ys.repeat_interleave(2))
    # a translation keeps every value: same sum, and the digit fits a 12 x 12 window
    assert torch.allclose(x.sum((1, 2, 3)), xs.sum((1, 2, 3)).repeat_interleave(2), rtol=1e-5)
    rows = (x[:, 0].sum(2) > 0).float().argmax(1), 15 - (x[:, 0].sum(2) > 0).float().flip(1).argmax(1)
    assert int((rows[1] - rows[0]).max()) <= 11
    offsets = {int(r) for r in rows[0]}
    assert len(offsets) > 3  # the digits really move (offsets 0..4 on a 16 px canvas)


def test_occlusion_only_changes_one_constant_square():
    hard = DATASETS.build("digits-hard", digit_px=16, occlude_px=6, noise_std=0.0, train_copies=1, test_copies=1)
    plain = DATASETS.build("digits")
    x, _ = tensors(hard, "test")
    xp, _ = tensors(plain, "test")
    for i in range(0, len(x), 37):
        changed = (x[i, 0] != xp[i, 0]).nonzero()
        if len(changed):
            (r0, c0), (r1, c1) = changed.min(0).values.tolist(), changed.max(0).values.tolist()
            assert r1 - r0 < 6 and c1 - c0 < 6
            assert x[i, 0, r0, c0].item() in (0.0, 1.0)


def test_sizes_range_and_determinism():
    a = DATASETS.build("digits-hard")
    b = DATASETS.build("digits-hard")
    c = DATASETS.build("digits-hard", corruption_seed=1)
    (xa, ya), (xb, _), (xc, _) = tensors(a), tensors(b), tensors(c)
    assert len(ya) == 1437 * 2 and len(tensors(a, "test")[1]) == 360 * 3
    assert a.info["n_train"] == 2874 and a.info["n_test"] == 1080
    assert torch.equal(xa, xb) and not torch.equal(xa, xc)
    assert float(xa.min()) >= 0.0 and float(xa.max()) <= 1.0  # intensities: rate/latency/phase encoders apply
    # the test split holds the same scans as the plain digits' test split (split before corrupting)
    assert torch.equal(tensors(a, "test")[1], tensors(DATASETS.build("digits"), "test")[1].repeat_interleave(3))
