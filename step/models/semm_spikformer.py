"""Spikformer with the Spiking Experts Mixture Mechanism (SEMM, Zhou et al., NeurIPS 2024).

What SEMM changes against Spikformer: the attention becomes EMSA (``semm``: head-wise spiking
experts gated by a spiking router) and the MLP becomes EMSP (channel-wise experts: a depth-wise
3x3 conv of half the hidden spikes gates the other half; hidden width ``mlp_ratio * dim``, halves
of ``mlp_ratio * dim / 2``). SPS embedding, spike-add shortcuts and head are Spikformer's.

The EMSP is part of this model. The attention comes from the run's
:class:`~step.attention.AttentionFactory` (any attention fits); built without one the model uses
``semm`` with expert_dim 96 and 4 experts, STEP's configuration (7,739,242 parameters at 4-384 and
10 classes); ``model=semm-spikformer*`` selects the same on the command line.
"""

from __future__ import annotations

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.attention.semm import ExpertsMixtureMLP
from step.models.spikformer import Spikformer
from step.registry import MODELS

PAPER = "SEMM (Zhou et al., NeurIPS 2024); STEP's Spikformer+SEMM re-implementation"


class SemmBlock(nn.Module):
    """x <- x + Attn(x); x <- x + EMSP(x)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron, attention: AttentionFactory):
        super().__init__()
        self.attn = attention(dim=dim, heads=heads, neuron=neuron)
        self.mlp = ExpertsMixtureMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(x, hw)
        return x + self.mlp(x, hw)


class SemmSpikformer(Spikformer):
    """Spikformer whose blocks use the SEMM expert attention (EMSA, by default) and the expert MLP
    (EMSP). Input ``[T, B, C, H, W]`` -> logits; ``forward_features`` gives tokens ``[T, B, N, D]``."""

    block_cls = SemmBlock

    @classmethod
    def default_attention(cls) -> AttentionFactory:
        return AttentionFactory("semm", expert_dim=96, num_expert=4)


MODELS.add("semm-spikformer", SemmSpikformer, paper=PAPER,
           description="Spikformer + SEMM (EMSA attention, EMSP MLP) of any depth and width")
MODELS.add("semm-spikformer-4-384", SemmSpikformer, paper=PAPER,
           description="Spikformer-4-384 + SEMM (CIFAR: 12 heads, patch 4, expert_dim 96, 4 experts)",
           depth=4, dim=384, heads=12, patch_size=4, img_size=32)
