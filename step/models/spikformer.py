"""Spikformer (Zhou et al., ICLR 2023): SPS patch embedding, SEW-shortcut blocks, mean-over-T head."""

from __future__ import annotations

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.errors import ConfigError
from step.layers.mlp import SpikingMLP
from step.layers.patch_embed import SpikingPatchSplitting
from step.layers.seq_embed import SpikingSeqEmbed
from step.layers.shortcut import closing_neuron
from step.models.common import PerTimestepLogits, resolve_components, init_linear_trunc_normal
from step.neurons.factory import NeuronFactory
from step.registry import MODELS


class SpikformerBlock(nn.Module):
    """x <- x + Attn(x); x <- x + MLP(x) on a spike stream (spike-add shortcut, ``sew``).

    An attention that emits a membrane (SDSA-1..4) is closed by ``attn_out_lif``, the neuron the
    rule of :mod:`step.layers.shortcut` gives a ``sew`` host, so the MLP reads spikes; a
    spike-emitting attention gets none (``attn_out_lif`` is None), which is Spikformer as published.
    """

    shortcut = "sew"

    def __init__(self, dim: int, heads: int, mlp_ratio: float, neuron: NeuronFactory, attention: AttentionFactory):
        super().__init__()
        self.attn = attention(dim=dim, heads=heads, neuron=neuron)
        self.attn_out_lif = closing_neuron(self.attn, self.shortcut, neuron)
        self.mlp = SpikingMLP(dim, int(dim * mlp_ratio), neuron)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        y = self.attn(x, hw)
        x = x + (self.attn_out_lif(y) if self.attn_out_lif is not None else y)
        return x + self.mlp(x)


class Spikformer(PerTimestepLogits, nn.Module):
    """Input ``[T, B, C, H, W]`` -> logits ``[B, num_classes]`` (mean over tokens, then over T).

    ``embed_stages`` is the number of conv stages of the patch splitting (4 in the paper; the
    STEP ablation cuts it to 1). ``modality='sequence'`` swaps the 2-D patch splitting for its 1-D counterpart
    (:class:`~step.layers.seq_embed.SpikingSeqEmbed`), taking ``[T, B, L, C]`` sequences; the
    runner sets it from the dataset, so one model class serves images, events and sequences.

    Variants change ``block_cls`` (the encoder block) and :meth:`default_attention` (used when
    the model is built without an attention factory); SEMM-Spikformer is one.
    """

    block_cls: type[nn.Module] = SpikformerBlock

    @classmethod
    def default_attention(cls) -> AttentionFactory | None:
        """The attention used when none is given (None: the platform default, ``ssa``)."""
        return None

    def __init__(
        self,
        num_classes: int = 10,
        img_size: int = 32,
        in_chans: int = 3,
        depth: int = 4,
        dim: int = 384,
        heads: int = 12,
        mlp_ratio: float = 4.0,
        patch_size: int = 4,
        neuron: NeuronFactory | None = None,
        attention: AttentionFactory | None = None,
        modality: str = "image",
        embed_stages: int = 4,
    ):
        super().__init__()
        neuron, attention = resolve_components(neuron, attention or self.default_attention())
        self.num_classes = num_classes
        self.modality = modality
        if modality == "sequence":
            if embed_stages != 4:  # the 1-D embedding has SPS's four conv stages, always
                raise ConfigError(f"spikformer: embed_stages={embed_stages} cuts the 2-D patch splitting; the sequence "
                                  "embedding always has 4 stages. Leave model.embed_stages=4 for sequence datasets.")
            self.patch_embed = SpikingSeqEmbed(in_chans, dim, patch_size, neuron)
        else:
            if img_size % patch_size:
                raise ValueError(f"spikformer: img_size {img_size} is not divisible by patch_size {patch_size}")
            self.patch_embed = SpikingPatchSplitting(in_chans, dim, patch_size, neuron, stages=embed_stages)
        self.blocks = nn.ModuleList(
            self.block_cls(dim, heads, mlp_ratio, neuron, attention) for _ in range(depth)
        )
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.modality == "sequence":
            x = self.patch_embed(x)
            H, W = 1, x.shape[2]
        else:
            H, W = x.shape[-2] // self.patch_embed.patch_size, x.shape[-1] // self.patch_embed.patch_size
            x = self.patch_embed(x)
        for block in self.blocks:
            x = block(x, (H, W))
        return x  # [T, B, N, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x).mean(2)  # [T, B, D]
        if self._timestep_output():
            return self.head(x)  # [T, B, K] (TET)
        return self.head(x.mean(0))


MODELS.add("spikformer", Spikformer, paper="Spikformer (Zhou et al., ICLR 2023)",
           description="Spikformer of any depth and width (depth, dim, heads, patch_size, ...)")

#: the released ImageNet and CIFAR10-DVS models build Q, K and V as bias-free 1x1 convolutions
#: (ZK-Zhou/spikformer imagenet/model.py, cifar10dvs/model.py); the DVS attention also scales by 0.25
_NO_QKV_BIAS = AttentionFactory("ssa", qkv_bias=False)
_DVS_ATTENTION = AttentionFactory("ssa", qkv_bias=False, scale=0.25)

_VARIANTS = {
    # name: (depth, dim, heads, patch_size, img_size, in_chans, attention)  -- the paper's configurations
    "spikformer-4-384": (4, 384, 12, 4, 32, 3, None),
    "spikformer-4-256": (4, 256, 8, 4, 32, 3, None),
    "spikformer-2-384": (2, 384, 12, 4, 32, 3, None),
    # CIFAR10-DVS / DVS128 Gesture: 2-channel event frames at 128 px, 16 heads
    "spikformer-2-256": (2, 256, 16, 16, 128, 2, _DVS_ATTENTION),
    # ImageNet at 224 px, patch 16 (four pooled SPS stages): 8-512 is the released configuration
    # (8 heads); 8-768 takes the 12 heads of the release's commented-out config, 8-384 12 heads
    "spikformer-8-384": (8, 384, 12, 16, 224, 3, _NO_QKV_BIAS),
    "spikformer-8-512": (8, 512, 8, 16, 224, 3, _NO_QKV_BIAS),
    "spikformer-8-768": (8, 768, 12, 16, 224, 3, _NO_QKV_BIAS),
}
for _name, (_depth, _dim, _heads, _patch, _img, _in, _attn) in _VARIANTS.items():
    _fixed = {"attention": _attn} if _attn is not None else {}
    MODELS.add(
        _name,
        Spikformer,
        paper="Spikformer (Zhou et al., ICLR 2023)",
        description=f"Spikformer-{_depth}-{_dim} ({_heads} heads, patch {_patch}, {_img} px"
                    + (f", {_attn.params}" if _attn is not None else "") + ")",
        depth=_depth,
        dim=_dim,
        heads=_heads,
        patch_size=_patch,
        img_size=_img,
        in_chans=_in,
        **_fixed,
    )
