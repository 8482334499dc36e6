"""Shared building blocks for the models (time-major tensors throughout)."""

from step.layers.fold import SeqModule, fold, unfold
from step.layers.linear_bn import LinearBN
from step.layers.spike_matmul import SpikeMatMul
from step.layers.patch_embed import SpikingPatchSplitting
from step.layers.mlp import SpikingMLP

__all__ = ["SeqModule", "fold", "unfold", "LinearBN", "SpikeMatMul", "SpikingPatchSplitting", "SpikingMLP"]
