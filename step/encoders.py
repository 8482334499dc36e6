"""Input encoders: ``[B, ...] -> [T, B, ...]``.

Encoders receive inputs in [0, 1]. Only ``direct`` (which repeats the analog input) also takes
standardised images (``dataset.normalize``, the released recipes' mean/std normalisation): an
encoder says so with ``accepts_normalized``, and the config check refuses ``dataset.normalize``
with any other encoder before anything is built. Event data bypasses the encoder. Stochastic encoders
draw from a ``torch.Generator`` seeded with ``seed`` when one is given, else from the global RNG
(which the runner seeds), so runs are reproducible either way.
"""

from __future__ import annotations

import torch
from torch import nn

from step.registry import ENCODERS


class Encoder(nn.Module):
    """Base class; ``T`` is the number of timesteps produced."""

    #: True when the encoding means something for any real input (standardised images included);
    #: False for codes of intensities in [0, 1] (rate, latency, phase, delta)
    accepts_normalized = False

    def __init__(self, T: int = 4):
        super().__init__()
        if int(T) < 1:
            raise ValueError(f"T must be >= 1, got {T}")
        self.T = int(T)

    def extra_repr(self) -> str:
        return f"T={self.T}"


def _check_unit_range(name: str, x: torch.Tensor) -> None:
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise ValueError(
            f"encoder '{name}' needs inputs in [0, 1] (un-normalised images); got range "
            f"[{float(x.min()):.3g}, {float(x.max()):.3g}]. Apply normalisation after encoding."
        )


@ENCODERS.register("direct", paper="Rathi & Roy 2021; used by every spiking transformer")
class Direct(Encoder):
    """Repeat the analog input T times; the first conv + BN + neuron acts as the encoder."""

    accepts_normalized = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).expand(self.T, *x.shape).contiguous()


@ENCODERS.register("rate", paper="Bernoulli rate coding (e.g. Diehl et al. 2015; Sengupta et al. 2019)")
class Rate(Encoder):
    """S[t] ~ Bernoulli(x) independently per step: the expected spike rate equals the intensity."""

    def __init__(self, T: int = 4, seed: int | None = None):
        super().__init__(T)
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(int(self.seed))
        return self._generator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_unit_range("rate", x)
        u = torch.rand((self.T, *x.shape), generator=self._gen(x.device), device=x.device, dtype=x.dtype)
        return (u < x.unsqueeze(0)).to(x.dtype)


@ENCODERS.register("latency", paper="Time-to-first-spike coding (Thorpe et al. 2001; Mostafa 2018)")
class Latency(Encoder):
    """One spike per input at t_f = round((1 - x)(T - 1)): brighter fires earlier (x=1 at t=0).

    Inputs at or below ``threshold`` never fire.
    """

    def __init__(self, T: int = 4, threshold: float = 0.0):
        super().__init__(T)
        self.threshold = float(threshold)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_unit_range("latency", x)
        t_fire = torch.round((1 - x) * (self.T - 1)).long()
        steps = torch.arange(self.T, device=x.device).view(self.T, *([1] * x.dim()))
        return ((steps == t_fire.unsqueeze(0)) & (x.unsqueeze(0) > self.threshold)).to(x.dtype)


@ENCODERS.register("phase", paper="Kim et al., Neurocomputing 2018 (phase coding); bit planes")
class Phase(Encoder):
    """Bit-plane (phase) coding: x is quantised to T bits, step t carries bit t, most significant
    first, and is worth 2^-(t+1), so sum_t S[t] 2^-(t+1) = floor(x 2^T) / 2^T (x=1 maps to all ones).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_unit_range("phase", x)
        q = torch.clamp(torch.floor(x * 2**self.T), max=2**self.T - 1).long()
        shifts = torch.arange(self.T - 1, -1, -1, device=x.device).view(self.T, *([1] * x.dim()))
        return ((q.unsqueeze(0) >> shifts) & 1).to(x.dtype)


@ENCODERS.register("delta", paper="Temporal-contrast (DVS-like) delta coding, e.g. Lichtsteiner et al. 2008")
class Delta(Encoder):
    """Temporal contrast: an ON spike wherever the signal rose by at least ``threshold`` since the
    last emitted level (the level then moves by ``threshold`` per spike, one spike per step).

    A static image ``[B, ...]`` is presented as a ramp x_t = x (t+1)/T, so brighter pixels cross
    more thresholds; a sequence ``[B, T, ...]`` (``sequence=True``) is encoded as given, and
    ``polarity=True`` adds OFF spikes as -1.
    """

    def __init__(self, T: int = 4, threshold: float = 0.1, sequence: bool = False, polarity: bool = False):
        super().__init__(T)
        if threshold <= 0:
            raise ValueError(f"delta encoder needs threshold > 0, got {threshold}")
        self.threshold = float(threshold)
        self.sequence = bool(sequence)
        self.polarity = bool(polarity)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.sequence:
            if x.shape[1] != self.T:
                raise ValueError(f"delta encoder: sequence has {x.shape[1]} steps, T is {self.T}")
            frames = x.transpose(0, 1)
        else:
            ramp = torch.arange(1, self.T + 1, device=x.device, dtype=x.dtype) / self.T
            frames = ramp.view(self.T, *([1] * x.dim())) * x.unsqueeze(0)
        level = torch.zeros_like(frames[0])
        out = []
        for frame in frames:
            on = (frame - level >= self.threshold).to(x.dtype)
            off = (level - frame >= self.threshold).to(x.dtype) if self.polarity else torch.zeros_like(on)
            level = level + self.threshold * (on - off)
            out.append(on - off)
        return torch.stack(out)
