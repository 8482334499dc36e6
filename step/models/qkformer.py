"""QKFormer (Zhou et al., NeurIPS 2024): a hierarchical spiking transformer with Q-K attention
and the spiking patch embedding with deformed shortcut (SPEDS).

Stages (D = ``dim``, L = ``depth``; reference/models.md sec. 5.4-5.5):

=========  ======================  ===================  =========================
layout     stage widths            blocks               resolution (input H)
=========  ======================  ===================  =========================
cifar      D/4, D/2, D             1 QK, 1 QK, L-2 Att  H, H/2, H/4
imagenet   D/4, D/2, D             1 QK, 2 QK, L-3 Att  H/4, H/8, H/16
dvs        D/2, D                  1 QK, L-1 Att        H/8, H/16
=========  ======================  ===================  =========================

Swappable stages: the blocks marked "Att" (the last stage) take the run's attention from the
:class:`~step.attention.AttentionFactory` (``attention=...``); without one they use Spikformer's SSA
with bias-free Q/K/V as QKFormer does (``ssa`` with ``qkv_bias=False``, the
``conf/attention/ssa_nobias.yaml`` that ``model=qkformer-*`` selects; ``attention=ssa`` adds 3D bias
parameters per block). The "QK"
blocks use the model's own ``qk_attention`` (default ``qk_token``, any registered attention name
works, built with that attention's defaults). Blocks: x <- x + Attn(x); x <- x + MLP(x) (spike-add
shortcut, both branches end in a neuron). Head: mean over tokens, then over T, then Linear.

``released_stage3_lif=True`` reproduces the released code's stage-3 attention, whose output
neuron runs over the folded ``[T*B, C, N]`` tensor (membrane carried from one sample into the next,
so eval logits depend on the batch; ``ssa`` with ``proj_lif_over_batch``). Off by default: the
paper's neuron runs over T for each sample. Turn it on to evaluate released checkpoints as they
were evaluated (their published numbers were measured that way); it needs ``attention=ssa``.

``forward_features(x)`` returns one feature map per stage, ``[T, B, C_i, H_i, W_i]`` (the stage's
output, integer spike counts from the residual stream), with ``feature_info`` giving each stage's
``num_chs`` and ``reduction`` (input size / H_i), for dense-task heads (FPN, detection).
"""

from __future__ import annotations

import torch
from torch import nn

from step.attention.factory import AttentionFactory
from step.layers.fold import SeqModule
from step.models.common import PerTimestepLogits, init_linear_trunc_normal, released_attention, resolve_components
from step.models.spikformer import SpikformerBlock
from step.neurons.factory import NeuronFactory
from step.registry import MODELS

PAPER = "QKFormer (Zhou et al., NeurIPS 2024)"


class DeformedShortcutEmbed(nn.Module):
    """SPEDS: a main path of conv3x3-BN-[maxpool]-neuron stages plus a 1x1 conv-BN-neuron shortcut.

    ``widths[i] -> widths[i+1]`` for stage i, max-pool (3, stride 2, pad 1) where ``pools[i]``.
    The shortcut taps the spikes after stage ``tap`` (the embedding's input for ``tap=-1``) and
    strides by the down-sampling that follows, so out = main + shortcut (values in {0, 1, 2}).
    Input and output ``[T, B, C, H, W]``.
    """

    def __init__(self, widths: list[int], pools: list[bool], tap: int, neuron):
        super().__init__()
        if len(widths) != len(pools) + 1 or not -1 <= tap < len(pools) - 1:
            raise ValueError(f"SPEDS: bad plan widths={widths} pools={pools} tap={tap}")
        self.tap = tap
        self.convs = nn.ModuleList()
        self.lifs = nn.ModuleList()
        for i, pool in enumerate(pools):
            layers = [nn.Conv2d(widths[i], widths[i + 1], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[i + 1])]
            if pool:
                layers.append(nn.MaxPool2d(3, 2, 1))
            self.convs.append(SeqModule(*layers))
            self.lifs.append(neuron())
        stride = 2 ** sum(pools[tap + 1:])
        self.shortcut = SeqModule(nn.Conv2d(widths[tap + 1], widths[-1], 1, stride, 0, bias=False), nn.BatchNorm2d(widths[-1]))
        self.shortcut_lif = neuron()
        self.reduction = 2 ** sum(pools)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = x
        for i, (conv, lif) in enumerate(zip(self.convs, self.lifs)):
            x = lif(conv(x))
            if i == self.tap:
                feat = x
        return x + self.shortcut_lif(self.shortcut(feat))


def _embed_plans(layout: str, in_chans: int, widths: list[int]) -> list[tuple[list[int], list[bool], int]]:
    """(widths, pools, tap) of each stage's embedding for ``layout`` (reference sec. 5.4)."""
    E = widths[0]
    if layout == "cifar":
        first = ([in_chans, E // 2, E], [False, False], 0)
        later = [False, True]
    elif layout == "imagenet":
        first = ([in_chans, E // 2, E, E], [True, True, False], 0)
        later = [True, False]
    elif layout == "dvs":
        first = ([in_chans, E // 8, E // 4, E // 2, E], [False, True, True, True], 1)
        later = [False, True]
    else:
        raise ValueError(f"qkformer: layout must be 'cifar', 'imagenet' or 'dvs', got {layout!r}")
    return [first] + [([w // 2, w, w], later, -1) for w in widths[1:]]


def _stage_plan(layout: str, depth: int, dim: int) -> list[tuple[int, int, bool]]:
    """(width, blocks, is_qk) per stage."""
    if layout == "dvs":
        plan = [(dim // 2, 1, True), (dim, depth - 1, False)]
    else:
        qk2 = 1 if layout == "cifar" else 2
        plan = [(dim // 4, 1, True), (dim // 2, qk2, True), (dim, depth - 1 - qk2, False)]
    if plan[-1][1] < 1:
        raise ValueError(f"qkformer ({layout}): depth {depth} leaves no attention block in the last stage")
    return plan


class QKFormer(PerTimestepLogits, nn.Module):
    """Input ``[T, B, C, H, W]`` -> logits ``[B, num_classes]``; see the module doc for the stages."""

    def __init__(
        self,
        num_classes: int = 10,
        img_size: int = 32,
        in_chans: int = 3,
        depth: int = 4,
        dim: int = 384,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        layout: str = "cifar",
        qk_attention: str = "qk_token",
        released_stage3_lif: bool = False,
        neuron: NeuronFactory | None = None,
        attention: AttentionFactory | None = None,
    ):
        super().__init__()
        if attention is None:
            attention = AttentionFactory("ssa", qkv_bias=False)
        self.released_stage3_lif = bool(released_stage3_lif)
        if self.released_stage3_lif:  # the stage-3 SSA of the released code
            attention = released_attention("qkformer", "released_stage3_lif", attention, "ssa", "proj_lif_over_batch")
        neuron, attention = resolve_components(neuron, attention)
        divisor = 16 if layout == "dvs" else 8  # the stem's narrowest conv is dim / divisor wide
        if dim % divisor:
            raise ValueError(f"qkformer ({layout}): dim must be divisible by {divisor}, got {dim}")
        qk_factory = AttentionFactory(qk_attention)
        plan = _stage_plan(layout, depth, dim)
        embeds = _embed_plans(layout, in_chans, [w for w, _, _ in plan])
        self.num_classes = num_classes
        self.layout = layout
        self.embeds = nn.ModuleList(DeformedShortcutEmbed(w, p, t, neuron) for w, p, t in embeds)
        self.stages = nn.ModuleList(
            nn.ModuleList(SpikformerBlock(w, heads, mlp_ratio, neuron, qk_factory if is_qk else attention)
                          for _ in range(n))
            for w, n, is_qk in plan
        )
        reduction, self.feature_info = 1, []
        for i, (embed, (w, _, _)) in enumerate(zip(self.embeds, plan)):
            reduction *= embed.reduction
            self.feature_info.append({"num_chs": w, "reduction": reduction, "module": f"stages.{i}"})
        if img_size % reduction:
            raise ValueError(f"qkformer ({layout}): img_size {img_size} is not divisible by {reduction}")
        self.head = nn.Linear(dim, num_classes)
        self.apply(init_linear_trunc_normal)

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One ``[T, B, C_i, H_i, W_i]`` map per stage (see ``feature_info``)."""
        features = []
        for embed, blocks in zip(self.embeds, self.stages):
            x = embed(x)
            T, B, C, H, W = x.shape
            tokens = x.flatten(3).transpose(-1, -2)
            for block in blocks:
                tokens = block(tokens, (H, W))
            x = tokens.transpose(-1, -2).reshape(T, B, C, H, W)
            features.append(x)
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)[-1].flatten(3).mean(3)  # [T, B, D]
        if self._timestep_output():
            return self.head(x)  # [T, B, K] (TET)
        return self.head(x.mean(0))


MODELS.add("qkformer", QKFormer, paper=PAPER,
           description="QKFormer of any depth/width/layout (depth, dim, heads, layout, qk_attention, ...)")

_VARIANTS = {
    # name: (layout, depth, dim, heads, mlp_ratio, img_size, in_chans) -- the released configurations
    "qkformer-4-384": ("cifar", 4, 384, 8, 4.0, 32, 3),
    "qkformer-10-384": ("imagenet", 10, 384, 6, 4.0, 224, 3),
    "qkformer-10-512": ("imagenet", 10, 512, 8, 4.0, 224, 3),
    "qkformer-10-768": ("imagenet", 10, 768, 12, 4.0, 224, 3),
    "qkformer-2-256": ("dvs", 2, 256, 16, 1.0, 128, 2),
}
for _name, (_layout, _depth, _dim, _heads, _mlp, _img, _in) in _VARIANTS.items():
    MODELS.add(_name, QKFormer, paper=PAPER,
               description=f"QKFormer HST-{_depth}-{_dim} ({_layout} layout, {_heads} heads, mlp {_mlp:g})",
               layout=_layout, depth=_depth, dim=_dim, heads=_heads, mlp_ratio=_mlp, img_size=_img, in_chans=_in)
