"""Models, each registered in ``step.registry.MODELS`` under a name that reads as its spec."""

from step.models import spikformer  # noqa: F401  (registers)
from step.models import sdt, meta_spikeformer  # noqa: F401  (registers sdt-*, meta-spikeformer-*)
from step.models import qkformer, semm_spikformer, twins  # noqa: F401  (registers qkformer-*, semm-spikformer-*, int8-twin)
