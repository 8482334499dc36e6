"""Sequence datasets (digits-seq, mnist1d) and the 1-D spiking patch embedding."""

import random

import numpy as np
import pytest
import torch

from step.data.sequences import fixed_permutation, image_to_sequence
from step.registry import DATASETS


def test_image_to_sequence_reads_pixels_and_rows():
    x = torch.arange(2 * 3 * 4).reshape(2, 3, 4)  # [C, H, W]
    pix = image_to_sequence(x, "pixel")
    assert pix.shape == (12, 2)
    assert pix[5].tolist() == [x[0, 1, 1].item(), x[1, 1, 1].item()]  # raster position 5 = (row 1, col 1)
    rows = image_to_sequence(x, "row")
    assert rows.shape == (3, 8)
    assert rows[2].tolist() == [v for w in range(4) for v in (x[0, 2, w].item(), x[1, 2, w].item())]
    perm = torch.tensor([2, 0, 1])
    assert torch.equal(image_to_sequence(x, "row", perm)[0], rows[2])


def test_permutation_depends_only_on_seed():
    a, b = fixed_permutation(64, 3), fixed_permutation(64, 3)
    assert torch.equal(a, b) and not torch.equal(a, fixed_permutation(64, 4))
    assert sorted(a.tolist()) == list(range(64))


def test_digits_seq_pixel_row_and_permuted():
    pixel = DATASETS.build("digits-seq", img_size=8)
    x, y = pixel.train[0]
    assert pixel.modality == "sequence" and pixel.seq_len == 64 and pixel.in_chans == 1
    assert x.shape == (64, 1) and 0.0 <= x.min() and x.max() <= 1.0
    image, y_img = DATASETS.build("digits", img_size=8).train[0]
    assert y == y_img and torch.equal(x[:, 0], image.flatten())
    rows = DATASETS.build("digits-seq", img_size=8, mode="row")
    assert rows.train[0][0].shape == (8, 8) and rows.in_chans == 8
    perm = DATASETS.build("digits-seq", img_size=8, permute=True, permutation_seed=1)
    xp = perm.train[0][0]
    order = fixed_permutation(64, 1)
    assert torch.equal(xp[:, 0], image.flatten()[order])


def test_digits_seq_rejects_unknown_mode():
    with pytest.raises(ValueError, match="pixel"):
        DATASETS.build("digits-seq", mode="column")


def test_mnist1d_generated_locally_with_defaults_and_cached(tmp_path):
    np.random.seed(123)
    random.seed(123)
    np_before, py_before = np.random.get_state()[1].copy(), random.getstate()
    bundle = DATASETS.build("mnist1d", root=str(tmp_path))
    assert np.array_equal(np.random.get_state()[1], np_before) and random.getstate() == py_before
    assert (len(bundle.train), len(bundle.test), bundle.seq_len, bundle.num_classes) == (4000, 1000, 40, 10)
    x, y = bundle.train[0]
    assert x.shape == (40, 1) and x.dtype == torch.float32
    labels = bundle.train.tensors[1]
    assert set(labels.tolist()) == set(range(10)) and torch.bincount(labels).min() > 300
    assert (tmp_path / "mnist1d" / "mnist1d-default.npz").is_file()
    again = DATASETS.build("mnist1d", root=str(tmp_path))  # read back from the cache
    assert torch.equal(again.test.tensors[0], bundle.test.tensors[0])
    assert torch.equal(again.train.tensors[1], labels)


def _lif_factory(T):
    from step.neurons.factory import NeuronFactory

    return NeuronFactory("lif", T=T)


@pytest.mark.parametrize("L,patch,N", [(64, 4, 16), (40, 4, 10), (37, 8, 5), (16, 1, 16)])
def test_seq_embed_shapes(L, patch, N):
    from step.layers.seq_embed import SpikingSeqEmbed

    T, B, C, D = 2, 3, 5, 16
    embed = SpikingSeqEmbed(C, D, patch, _lif_factory(T))
    out = embed(torch.rand(T, B, L, C))
    assert out.shape == (T, B, N, D) and embed.num_tokens(L) == N
    # spikes plus spiking RPE: values in {0, 1, 2}
    assert set(out.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_seq_embed_neurons_come_from_the_factory_and_gradients_flow():
    from step.layers.seq_embed import SpikingSeqEmbed
    from step.neurons.factory import spiking_nodes

    calls = []
    factory = _lif_factory(2)

    def counting():
        calls.append(1)
        return factory()

    embed = SpikingSeqEmbed(1, 8, 2, counting)
    assert len(calls) == 5 and len(list(spiking_nodes(embed))) == 5
    x = torch.rand(2, 4, 12, 1) * 4
    embed(x).sum().backward()
    assert embed.stages[0]["conv"][0].weight.grad.abs().sum() > 0


def test_seq_embed_rejects_image_input():
    from step.layers.seq_embed import SpikingSeqEmbed

    with pytest.raises(ValueError, match=r"\[T, B, L, C\]"):
        SpikingSeqEmbed(1, 8, 2, _lif_factory(2))(torch.rand(2, 1, 1, 8, 8))
