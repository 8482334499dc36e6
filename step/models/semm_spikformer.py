"""Spikformer with the Spiking Experts Mixture Mechanism (SEMM, Zhou et al., NeurIPS 2024).

What SEMM changes against Spikformer: the attention becomes EMSA (``semm``: head-wise spiking
experts gated by a spiking router) and the MLP becomes EMSP (channel-wise experts: a depth-wise
3x3 conv of half the hidden spikes gates the other half; hidden width ``mlp_ratio * dim``, halves
of ``mlp_ratio * dim / 2``). SPS embedding, spike-add shortcuts and head are Spikformer's.

The EMSP is part of this model. The attention comes from the run's
:class:`~step.attention.AttentionFactory` (any attention fits); built without one the model uses
``semm`` with expert_dim 96 and 4 experts, STEP's configuration (7,739,242 parameters at 4-384 and
10 classes); ``model=semm-spikformer*`` selects the same on the command line.

``released_router_reshape=True`` builds the ``semm`` attention with STEP's router reshape (see
:mod:`step.attention.semm`), which STEP's published SEMM numbers were trained with. Off by default.
"""

from __future__ import annotations

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.attention.semm import ExpertsMixtureMLP
from step.layers.shortcut import closing_neuron
from step.models.common import released_attention
from step.models.spikformer import Spikformer
from step.neurons.factory import NeuronFactory
from step.registry import MODELS

PAPER = "SEMM (Zhou et al., NeurIPS 2024); STEP's Spikformer+SEMM re-implementation"


class SemmBlock(nn.Module):
    """x <- x + Attn(x); x <- x + EMSP(x) on a spike stream (``sew``; a membrane-emitting attention
    is closed by ``attn_out_lif``, as in :class:`~step.models.spikformer.SpikformerBlock`)."""

    shortcut = "sew"

    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron, attention: AttentionFactory):
        super().__init__()
        self.attn = attention(dim=dim, heads=heads, neuron=neuron)
        self.attn_out_lif = closing_neuron(self.attn, self.shortcut, neuron)
        self.mlp = ExpertsMixtureMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = self.attn(x, hw)
        x = x + (self.attn_out_lif(y) if self.attn_out_lif is not None else y)
        return x + self.mlp(x, hw)


class SemmSpikformer(Spikformer):
    """Spikformer whose blocks use the SEMM expert attention (EMSA, by default) and the expert MLP
    (EMSP). Input ``[T, B, C, H, W]`` -> logits; ``forward_features`` gives tokens ``[T, B, N, D]``."""

    block_cls = SemmBlock

    def __init__(self, num_classes: int = 10, img_size: int = 32, in_chans: int = 3, depth: int = 4, dim: int = 384,
                 heads: int = 12, mlp_ratio: float = 4.0, patch_size: int = 4, neuron: NeuronFactory | None = None,
                 attention: AttentionFactory | None = None, modality: str = "image", embed_stages: int = 4,
                 released_router_reshape: bool = False):
        attention = attention or self.default_attention()
        self.released_router_reshape = bool(released_router_reshape)
        if self.released_router_reshape:  # STEP's SEMM router
            attention = released_attention("semm-spikformer", "released_router_reshape", attention, "semm",
                                           "released_router_reshape")
        super().__init__(num_classes=num_classes, img_size=img_size, in_chans=in_chans, depth=depth, dim=dim,
                         heads=heads, mlp_ratio=mlp_ratio, patch_size=patch_size, neuron=neuron, attention=attention,
                         modality=modality, embed_stages=embed_stages)

    @classmethod
    def default_attention(cls) -> AttentionFactory:
        return AttentionFactory("semm", expert_dim=96, num_expert=4)


MODELS.add("semm-spikformer", SemmSpikformer, paper=PAPER,
           description="Spikformer + SEMM (EMSA attention, EMSP MLP) of any depth and width")
MODELS.add("semm-spikformer-4-384", SemmSpikformer, paper=PAPER,
           description="Spikformer-4-384 + SEMM (CIFAR: 8 heads as STEP's spikf_semm config, patch 4, expert_dim 96, 4 experts)",
           depth=4, dim=384, heads=8, patch_size=4, img_size=32)
