"""What every dataset builder returns: the splits plus what a model needs to know of the data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

#: image: ``x`` is ``[C, H, W]`` in [0, 1] and goes through the run's encoder;
#: event: ``x`` is ``[T, 2, H, W]`` frames that bypass the encoder;
#: sequence: ``x`` is ``[L, C]`` read as one position per timestep or embedded as tokens.
MODALITIES = ("image", "event", "sequence")


@dataclass
class DataBundle:
    """Train and test splits of one dataset and its shape facts."""

    name: str
    train: Dataset
    test: Dataset
    num_classes: int
    in_chans: int
    img_size: int | tuple[int, int] | None
    modality: str = "image"
    #: for event data: the number of time bins the frames carry (must equal the run's T)
    timesteps: int | None = None
    #: for sequences: the sequence length
    seq_len: int | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
