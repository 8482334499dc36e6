"""Encoders: [B, ...] -> [T, B, ...] with the properties the issue states."""

import pytest
import torch

from step.registry import ENCODERS


def test_all_registered():
    assert set(ENCODERS.names()) >= {"direct", "rate", "latency", "phase", "delta"}


def test_direct_equals_repetition():
    x = torch.rand(2, 1, 3, 3)
    out = ENCODERS.build("direct", T=5)(x)
    assert out.shape == (5, 2, 1, 3, 3)
    assert all(torch.equal(out[t], x) for t in range(5))


def test_rate_matches_intensity_on_average_and_is_seeded():
    x = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0])
    enc = ENCODERS.build("rate", T=4000, seed=7)
    out = enc(x)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert out[:, 0].sum() == 0 and out[:, 4].sum() == 4000
    # binomial std of a mean of 4000 draws is at most 0.008: 5 sigma is 0.04
    assert torch.allclose(out.mean(0), x, atol=0.04)
    again = ENCODERS.build("rate", T=4000, seed=7)(x)
    assert torch.equal(out, again)
    assert not torch.equal(out, ENCODERS.build("rate", T=4000, seed=8)(x))
    torch.manual_seed(3)
    a = ENCODERS.build("rate", T=50)(x)
    torch.manual_seed(3)
    assert torch.equal(a, ENCODERS.build("rate", T=50)(x))


def test_rate_rejects_normalised_images():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ENCODERS.build("rate", T=2)(torch.tensor([-0.4, 1.2]))


def test_latency_orders_by_intensity_one_spike_each():
    x = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.0])
    out = ENCODERS.build("latency", T=5)(x)
    assert out.sum(0).tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]  # x = 0 never fires
    first = out[:, :4].argmax(0)
    assert first.tolist() == [0, 1, 2, 3]  # t_f = round((1 - x) * 4)
    assert torch.all(first[:-1] <= first[1:])


def test_phase_bit_planes_reconstruct_quantised_value():
    x = torch.tensor([0.0, 0.3, 0.5, 0.75, 1.0])
    T = 4
    out = ENCODERS.build("phase", T=T)(x)
    weights = torch.tensor([2.0 ** -(t + 1) for t in range(T)]).view(T, 1)
    assert torch.allclose((out * weights).sum(0), torch.tensor([0.0, 0.25, 0.5, 0.75, 0.9375]))
    assert out[:, 2].tolist() == [1.0, 0.0, 0.0, 0.0]  # 0.5 = binary .1000


def test_delta_counts_threshold_crossings():
    x = torch.tensor([0.0, 0.25, 1.0])
    out = ENCODERS.build("delta", T=4, threshold=0.1)(x)  # ramp to x: about x/0.1 ON events, one per step at most
    assert out.shape == (4, 3)
    assert out[:, 0].sum() == 0
    assert out[:, 1].sum() == 2 and out[:, 2].sum() == 4
    seq = torch.tensor([[0.0, 0.5, 0.5, 0.0]])  # [B=1, T=4]: up, hold, down
    ev = ENCODERS.build("delta", T=4, threshold=0.2, sequence=True, polarity=True)(seq)
    assert ev[:, 0].tolist() == [0.0, 1.0, 1.0, -1.0]
