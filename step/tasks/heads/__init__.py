"""Dense-prediction parts shared by segmentation and detection: feature adapter, spiking FPN, heads."""

from step.tasks.heads.features import feature_maps, probe_feature_shapes
from step.tasks.heads.fpn import SpikingFPN, SpikingSemanticHead
from step.tasks.heads.fcos import SpikingFCOSHead

__all__ = ["feature_maps", "probe_feature_shapes", "SpikingFPN", "SpikingSemanticHead", "SpikingFCOSHead"]
