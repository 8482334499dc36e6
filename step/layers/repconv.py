"""Meta-SpikeFormer's re-parameterisable 3x3 convolution (RepConv) and its token-grid adapter.

Meta-SpikeFormer (Yao et al., ICLR 2024, Eq. 11-12) generates Q, K, V and the attention output
with "re-parameterization convolutions (Ding et al., 2021) with kernel size 3x3". The released
code (reference/models.md sec. 4.3) trains a linear chain that folds into one 3x3 convolution:

    RepConv(x) = BN2(Conv1x1_pw(DWConv3x3(PadBN0(BN1(Conv1x1(x))))))

* ``Conv1x1``  C_in -> C_in, no bias;   ``BN1`` over C_in;
* ``PadBN0``   pads one pixel with the per-channel value BN1(0) = beta - mu gamma / sqrt(var + eps)
  (computed from the running statistics with detached affine parameters), so the border equals a
  zero-padded input pushed through the chain and the whole chain stays foldable;
* ``DWConv3x3`` depthwise, no padding, no bias; ``Conv1x1_pw`` C_in -> C_out, no bias; ``BN2``.

Parameters: C_in^2 + 2 C_in + 9 C_in + C_in C_out + 2 C_out. In eval mode the chain is affine,
so :meth:`RepConv.fused_conv` returns the single ``Conv2d(C_in, C_out, 3, padding=1, bias=True)``

    K[o,i] = a2[o] sum_c P[o,c] a1[c] D[c] W1[c,i],   b[o] = a2[o] sum_c P[o,c] b1[c] sum(D[c]) + b2[o]

(a, b the per-channel BN scale and shift), and :meth:`RepConv.reparameterize` swaps it in for
inference. The chain is the "multi-branch" training form of this layer; it has no parallel
branches, unlike RepVGG, because the released model has none.
"""

from __future__ import annotations

import torch
from torch import nn

from step.errors import ConfigError


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BN as ``a * x + b`` (running statistics)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class RepConv(nn.Module):
    """``[N, C_in, H, W] -> [N, C_out, H, W]``: the trainable chain above, or its fused 3x3 conv.

    ``folds_into_one_layer``: only the chain's first conv must read spikes (the spike-driven
    audit, :mod:`step.energy.audit`); the later ones read an affine image of them.
    """

    folds_into_one_layer = True

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv1 = nn.Conv2d(in_channels, in_channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.dw = nn.Conv2d(in_channels, in_channels, 3, padding=0, groups=in_channels, bias=False)
        self.pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.fused: nn.Conv2d | None = None

    def _pad_value(self) -> torch.Tensor:
        bn = self.bn1
        return bn.bias.detach() - bn.running_mean * bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        y = self.bn1(self.conv1(x))
        y = nn.functional.pad(y, (1, 1, 1, 1))
        pad = self._pad_value().view(1, -1, 1, 1)
        border = torch.ones_like(y[:1, :1])
        border[..., 1:-1, 1:-1] = 0
        y = y + border * pad  # the zero border becomes BN1(0)
        return self.bn2(self.pw(self.dw(y)))

    @torch.no_grad()
    def fused_conv(self) -> nn.Conv2d:
        """One 3x3 conv (padding 1, bias) equal to the chain in eval mode."""
        a1, b1 = _bn_affine(self.bn1)
        a2, b2 = _bn_affine(self.bn2)
        w1 = self.conv1.weight[:, :, 0, 0]  # [c, i]
        d = self.dw.weight[:, 0]  # [c, 3, 3]
        p = self.pw.weight[:, :, 0, 0]  # [o, c]
        kernel = torch.einsum("oc,c,ckl,ci->oikl", p, a1, d, w1) * a2.view(-1, 1, 1, 1)
        bias = a2 * (p @ (b1 * d.sum(dim=(1, 2)))) + b2
        conv = nn.Conv2d(self.in_channels, self.out_channels, 3, padding=1, bias=True)
        conv = conv.to(device=kernel.device, dtype=kernel.dtype)
        conv.weight.copy_(kernel)
        conv.bias.copy_(bias)
        return conv

    def reparameterize(self) -> None:
        """Replace the chain by its fused conv (inference only; the chain's parameters are dropped)."""
        if self.fused is not None:
            return
        self.fused = self.fused_conv()
        for name in ("conv1", "bn1", "dw", "pw", "bn2"):
            delattr(self, name)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, fused={self.fused is not None}"


def tokens_to_maps(x: torch.Tensor, hw: tuple[int, int] | None, who: str) -> torch.Tensor:
    """``[T, B, N, C] -> [T*B, C, H, W]`` on the token grid ``hw`` (N must equal H*W)."""
    T, B, N, C = x.shape
    if hw is None or hw[0] * hw[1] != N:
        raise ConfigError(
            f"{who} needs the token grid: got hw={hw} for {N} tokens. Convolutional Q/K/V "
            "generators (qkv: repconv) only fit models whose tokens lie on an H x W grid; "
            "use qkv: linear otherwise."
        )
    return x.reshape(T * B, N, C).transpose(1, 2).reshape(T * B, C, hw[0], hw[1])


def maps_to_tokens(y: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, C, H, W] -> [T, B, N, C]``."""
    TB, C = y.shape[:2]
    return y.reshape(TB, C, -1).transpose(1, 2).reshape(T, TB // T, -1, C)


class TokenRepConvBN(nn.Module):
    """``BN(RepConv(x))`` on time-major tokens ``[T, B, N, C]`` laid out on the grid ``hw``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = RepConv(in_channels, out_channels)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, hw: tuple[int, int] | None = None) -> torch.Tensor:
        y = self.bn(self.conv(tokens_to_maps(x, hw, "RepConv")))
        return maps_to_tokens(y, x.shape[0])
