"""The temporal-modelling probe: evaluate with the timestep order changed.

STEP's paper argues that spiking transformers "lack strong temporal modeling". A direct test: train
normally, then feed the test inputs with their time axis reversed (x'[t] = x[T-1-t]) or shuffled
(x'[t] = x[pi(t)] for one random permutation pi per batch). A model whose output does not depend on
the order of its timesteps loses nothing; one that models time loses accuracy. Only the final test
evaluation is reordered (``trainer.eval_time_order``); training always sees the normal order.

With direct encoding every timestep holds the same frame, so the probe is only informative on
event or sequence data (digits-dvs, cifar10-dvs, sequence datasets read as time).
"""

from __future__ import annotations

from typing import Callable

import torch

from step.errors import ConfigError

ORDERS = ("normal", "reversed", "shuffled")


def reorder_time(x: torch.Tensor, order: str, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x`` is time-major ``[T, B, ...]``; returns it with the time axis in ``order``."""
    if order == "normal":
        return x
    if order == "reversed":
        return x.flip(0)
    if order == "shuffled":
        perm = torch.randperm(x.shape[0], generator=generator)
        return x.index_select(0, perm.to(x.device))
    raise ConfigError(f"trainer.eval_time_order must be one of {', '.join(ORDERS)}, got '{order}'.")


def time_order(order: str, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """A callable applying ``order`` to each batch (None for the normal order).

    ``shuffled`` draws its permutations from a generator seeded with ``seed``, so a probe is
    repeatable run to run.
    """
    if order not in ORDERS:
        raise ConfigError(f"trainer.eval_time_order must be one of {', '.join(ORDERS)}, got '{order}'.")
    if order == "normal":
        return None
    generator = torch.Generator().manual_seed(int(seed))
    return lambda x: reorder_time(x, order, generator)
