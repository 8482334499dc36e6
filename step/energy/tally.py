"""Running sums that stay on the device: the arithmetic and base class every energy counter shares.

A counter adds up the statistics of each call without reading them back: a value is a Python number
(CPU reductions) or a 0-d device tensor (accelerators), and the helpers below combine either kind.
:func:`to_host` then copies every tensor all counters hold in one device-to-host transfer, the
counters' only read of device values (:mod:`step.energy.counters` holds the per-layer counters).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from step.energy.reduce import Reduction


def lazy_add(total: Any, value: Any) -> Any:
    return value if total is None else total + value


def as_float(value: Any) -> float:
    return float(value.item()) if isinstance(value, torch.Tensor) else float(value or 0.0)


def lazy_min(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return torch.minimum(a, b) if isinstance(a, torch.Tensor) else min(a, b)


def lazy_max(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return torch.maximum(a, b) if isinstance(a, torch.Tensor) else max(a, b)


def lazy_and(a: Any, b: Any) -> Any:
    if a is None:
        return b
    return a & b if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor) else (a and b)


class TensorStats:
    """Running sums of the :class:`~step.energy.reduce.Reduction` of one input stream."""

    def __init__(self) -> None:
        self.numel = 0
        self.nnz = self.sum = self.abs_sum = self.min = self.max = self.integer = self.ones = None

    def update(self, red: Reduction) -> Reduction:
        self.numel += red.numel
        self.nnz, self.sum, self.abs_sum = lazy_add(self.nnz, red.nnz), lazy_add(self.sum, red.sum), lazy_add(self.abs_sum, red.abs_sum)
        if red.ones is not None:
            self.ones = lazy_add(self.ones, red.ones)
        self.min, self.max = lazy_min(self.min, red.lo), lazy_max(self.max, red.hi)
        self.integer = lazy_and(self.integer, red.integer)
        return red

    def summary(self) -> dict[str, Any]:
        """rate, mean, binary ({0, 1}), ternary ({-1, 0, 1}), integer (any integer spikes), signed, max."""
        if not self.numel:
            return {"rate": None, "mean": None, "abs_mean": None, "binary": False, "ternary": False,
                    "integer": False, "signed": False, "max": 0.0}
        lo, hi = as_float(self.min), as_float(self.max)
        integer = bool(as_float(self.integer))
        return {
            "rate": as_float(self.nnz) / self.numel,
            "mean": as_float(self.sum) / self.numel,
            "abs_mean": as_float(self.abs_sum) / self.numel,
            "binary": integer and lo >= 0 and hi <= 1,
            "ternary": integer and -1 <= lo < 0 and hi <= 1,
            "integer": integer,
            "signed": lo < 0,
            "max": max(abs(lo), abs(hi)),
        }


class AccumulatorBase:
    def __init__(self, name: str, module: nn.Module, kind: str):
        self.name, self.module, self.kind = name, module, kind
        self.type = type(module).__name__
        self.clear()

    def clear(self) -> None:
        self.order: int | None = None
        self.output_shape: tuple[int, ...] = ()
        self.steps_total = 0.0  # sum over calls of steps x samples

    def _per_sample_shape(self, out: torch.Tensor, steps: int, batch: int) -> tuple[int, ...]:
        shape = tuple(out.shape)
        if steps > 1 and len(shape) >= 2 and shape[0] * shape[1] == steps * batch:
            return shape[2:]
        return shape[1:]


def to_host(accumulators) -> int:
    """Replace every tensor an accumulator holds by host values, in ONE device-to-host copy.

    0-d tensors become Python floats (bools for flags), planes CPU float64 tensors. Returns the
    number of tensors moved. This is the counters' only read of device values.
    """
    slots: list[tuple[Any, str, torch.Tensor]] = []
    for acc in accumulators:
        for holder in acc.host_holders():
            for name, value in vars(holder).items():
                if isinstance(value, torch.Tensor) and name != "module":
                    slots.append((holder, name, value))
    if not slots:
        return 0
    # 0-d values first, so that one tolist() of that slice turns them into floats
    slots.sort(key=lambda slot: slot[2].dim() != 0)
    flat = torch.cat([v.detach().reshape(-1).to(torch.float64) for _, _, v in slots]).cpu()
    n_scalars = sum(1 for _, _, v in slots if v.dim() == 0)
    scalars = flat[:n_scalars].tolist()
    offset = n_scalars
    for i, (holder, name, value) in enumerate(slots):
        if i < n_scalars:
            host: Any = bool(scalars[i]) if value.dtype == torch.bool else scalars[i]
        else:
            host = flat[offset:offset + value.numel()].reshape(value.shape)
            offset += value.numel()
        setattr(holder, name, host)
    return len(slots)
