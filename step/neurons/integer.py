"""Integer-valued (multi-spike) LIF: spikes in {0, 1, ..., D} during training, emitted at
inference as up to D binary spikes. Luo et al., ECCV 2024 (SpikeYOLO, "Integer-valued training and
spike-driven inference"); Yao et al. 2024, E-SpikeFormer / SDT-v3 (arXiv 2411.16061)."""

from __future__ import annotations

import torch

from step.neurons.base import neuron_signature
from step.neurons.lif import LIF
from step.registry import NEURONS


class _RoundClampSTE(torch.autograd.Function):
    """round(clamp(u, 0, D)) forward; straight-through (1 inside [0, D], 0 outside) backward."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, max_spike: int) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(u)
        ctx.max_spike = max_spike
        return torch.round(torch.clamp(u, 0, max_spike))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (u,) = ctx.saved_tensors
        inside = (u >= 0) & (u <= ctx.max_spike)
        return grad * inside.to(grad.dtype), None


@neuron_signature(max_spike=4)
@NEURONS.register("ilif", paper="Luo et al., ECCV 2024 (SpikeYOLO I-LIF); arXiv 2411.16061")
class IntegerLIF(LIF):
    """LIF charge, then an integer spike count and a soft reset by what was emitted:

    H[t] = LIF charge;  S[t] = round(clamp(H[t] / V_th, 0, D));  V[t] = H[t] - S[t] V_th
    (hard reset: V[t] = V_reset where S[t] > 0). The gradient of S is straight-through
    (dS/dH = 1/V_th inside [0, D V_th], else 0), as in the papers; the configured ``surrogate`` is
    kept as an attribute for the uniform interface but not used by this quantiser.
    """

    def __init__(self, max_spike: int = 4, **kwargs):
        super().__init__(**kwargs)
        if int(max_spike) < 1:
            raise ValueError(f"ilif needs max_spike >= 1, got {max_spike}")
        self.max_spike = int(max_spike)

    def fire(self, h: torch.Tensor) -> torch.Tensor:
        return _RoundClampSTE.apply(h / self.threshold, self.max_spike)

    def reset(self, h: torch.Tensor, spike: torch.Tensor) -> torch.Tensor:
        s = spike.detach() if self.detach_reset else spike
        if self.v_reset is None:
            return h - s * self.threshold
        fired = (s > 0).to(h.dtype)
        return fired * self.v_reset + (1.0 - fired) * h

    _integer_spike = True  # the neuron op (step.neurons.lif_op) computes fire / reset above

    def extra_repr(self) -> str:
        return super().extra_repr() + f", max_spike={self.max_spike}"


@NEURONS.register("nilif", paper="Yao et al. 2024, E-SpikeFormer (arXiv 2411.16061), normalised I-LIF")
class NormalizedIntegerLIF(IntegerLIF):
    """I-LIF whose output is divided by D: values {0, 1/D, ..., 1}, so activations keep the scale
    of a binary neuron while training; at inference 1/D folds into the next layer's weights."""

    def run(self, x_seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s, v = super().run(x_seq)
        return s / self.max_spike, v
