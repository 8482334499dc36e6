"""SDT's DVS "Erode" pooling (``model.pooling=erode``): hand-computed maps, and SDSA-1 with it against
an independent re-computation in the released layout ([T, B, C, H, W] maps, MaxPool3d((1, 3, 3)))."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from step.attention import AttentionFactory
from step.config import compose, validate_config
from step.engine import builders
from step.errors import ConfigError
from step.layers.erode import erode_grid, erode_heads
from step.registry import MODELS


def test_erode_grid_spreads_a_spike_to_its_3x3_neighbourhood_per_channel():
    # a 4x4 grid, 2 channels: channel 0 spikes at (1, 1), channel 1 at the corner (3, 3)
    grid = torch.zeros(2, 4, 4)
    grid[0, 1, 1], grid[1, 3, 3] = 1, 1
    tokens = grid.flatten(1).T.reshape(1, 1, 16, 2)  # [T, B, N, C], row-major tokens
    out = erode_grid(tokens, (4, 4)).reshape(4, 4, 2)
    expected0 = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.float32)
    expected1 = torch.tensor([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=torch.float32)
    assert torch.equal(out[..., 0], expected0) and torch.equal(out[..., 1], expected1)


def test_erode_heads_pools_token_index_and_channel_and_wraps_rows():
    # head layout [.., N, d] with N = 6 tokens of a 2x3 grid, d = 3: a spike at token 2 (row 0, last column)
    x = torch.zeros(1, 1, 1, 6, 3)
    x[..., 2, 0] = 1
    out = erode_heads(x)[0, 0, 0]
    expected = torch.zeros(6, 3)
    expected[1:4, 0:2] = 1  # tokens 1..3 (token 3 starts the next image row) x channels 0..1
    assert torch.equal(out, expected)
    y = torch.tensor([[0.0, 2.0, -1.0], [3.0, -5.0, 0.5]]).view(1, 2, 3)
    assert torch.equal(erode_heads(y)[0], torch.tensor([[3.0, 3.0, 2.0], [3.0, 3.0, 2.0]]))  # max of 3x3 windows


class ReleasedLayoutSDSA1(nn.Module):
    """SDSA-1 with Erode written in the released code's layout, from our module's weights."""

    def __init__(self, ours):
        super().__init__()
        self.ours = ours
        self.pool = nn.MaxPool3d((1, 3, 3), 1, (0, 1, 1))

    def forward(self, x, hw):
        o, (H, W) = self.ours, hw
        T, B, N, C = x.shape
        h = o.heads

        def maps(gen, lif):  # spikes as [T, B, C, H, W]
            return lif(gen(x, hw)).transpose(-1, -2).reshape(T, B, C, H, W)

        def heads(m):  # [T, B, C, H, W] -> [T, B, h, N, d]
            return m.flatten(3).transpose(-1, -2).reshape(T, B, N, h, C // h).permute(0, 1, 3, 2, 4)

        q = heads(maps(o.q, o.q_lif))
        k = heads(self.pool(maps(o.k, o.k_lif)))
        v = heads(self.pool(maps(o.v, o.v_lif)))
        kv = self.pool(k * v).sum(dim=-2, keepdim=True)
        y = self.pool(q * o.attn_lif(kv))
        y = y.transpose(3, 4).reshape(T, B, C, N).transpose(-1, -2)  # back to tokens
        return o.proj(y, hw)


def test_sdsa1_erode_equals_the_released_layout_computation():
    torch.manual_seed(0)
    attn = AttentionFactory("sdsa1", pooling="erode")(dim=8, heads=2, neuron=builders.build_neuron_factory(compose([])))
    attn.eval()
    for p in attn.parameters():  # weights large enough that Q, K, V and the attention neuron fire
        nn.init.normal_(p, 0.5, 1.0)
    x = (torch.rand(4, 3, 12, 8) > 0.6).float()  # binary tokens of a 3x4 grid
    with torch.no_grad():
        k = attn.k_lif(attn.k(x, (3, 4)))
        assert 0.1 < k.mean() < 0.9
        ours = attn(x, (3, 4))
        ref = ReleasedLayoutSDSA1(attn)(x, (3, 4))
        plain = AttentionFactory("sdsa1")(dim=8, heads=2, neuron=builders.build_neuron_factory(compose([])))
        plain.load_state_dict(attn.state_dict())
        plain.eval()
        assert not torch.equal(plain(x, (3, 4)), ours)  # the pooling changes the output
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_model_pooling_erode_reaches_every_sdsa1_of_sdt():
    cfg = compose(["model=sdt", "model.pooling=erode"])
    validate_config(cfg)
    from step.config.validate import group_params

    model = MODELS.build("sdt", neuron=builders.build_neuron_factory(cfg), attention=builders.build_attention_factory(cfg),
                         num_classes=10, in_chans=2, img_size=16, **group_params(cfg, "model"))
    pools = [m.pooling for m in model.modules() if type(m).__name__ == "SDSA1"]
    assert pools == ["erode"] * cfg.model.depth
    assert model(torch.rand(2, 2, 2, 16, 16)).shape == (2, 10)
    with pytest.raises(ConfigError, match="inside SDSA-1"):
        MODELS.build("sdt", depth=1, dim=16, heads=2, img_size=16, attention=AttentionFactory("ssa"), pooling="erode")
