"""Apply per-timestep layers to time-major tensors by folding T into the batch."""

from __future__ import annotations

import torch
from torch import nn

#: conv stacks run channels-last (``trainer.channels_last``; :func:`set_channels_last`)
_POLICY = {"channels_last": True}


def set_channels_last(on: bool) -> None:
    """Whether :class:`SeqModule` feeds its 2-D convolutions channels-last (NHWC) maps.

    oneDNN (CPU) and cuDNN run NHWC convolutions without reordering the activations to and from
    their blocked layouts on every call; on this project's 2-core CPU a Spikformer training step
    is a few per cent faster. Values are the same up to float rounding (another kernel runs); the
    layout flows through BN, pooling and the neurons, and tokens made from the maps
    (``flatten(-2).transpose(-1, -2)``) come out contiguous without a copy.
    """
    _POLICY["channels_last"] = bool(on)


def fold(x: torch.Tensor) -> torch.Tensor:
    """``[T, B, ...] -> [T*B, ...]``."""
    return x.flatten(0, 1)


def unfold(x: torch.Tensor, T: int) -> torch.Tensor:
    """``[T*B, ...] -> [T, B, ...]``."""
    return x.view(T, x.shape[0] // T, *x.shape[1:])


class SeqModule(nn.Sequential):
    """Stateless layers (conv, BN, pooling, linear) applied to every timestep at once.

    A stack that starts with a 2-D convolution gets its input channels-last when the policy
    (:func:`set_channels_last`) is on; the output keeps that layout. Its 2-D convolution weights are
    made channels-last when it is built under the policy, so that no step converts them (forward,
    backward and the gradient), which would copy every weight three times per step.
    """

    def __init__(self, *modules: nn.Module):
        super().__init__(*modules)
        if _POLICY["channels_last"]:
            for m in self:
                if isinstance(m, nn.Conv2d):
                    m.weight.data = m.weight.data.contiguous(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        T = x.shape[0]
        y = fold(x)
        if _POLICY["channels_last"] and y.dim() == 4 and len(self) and isinstance(self[0], nn.Conv2d):
            y = y.contiguous(memory_format=torch.channels_last)
        return unfold(super().forward(y), T)
