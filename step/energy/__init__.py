"""Op and firing-rate counting on the evaluation set, and energy models as pure functions of it.

``EnergyMeter`` (hooks) -> ``OpTable`` (counts per inference) -> ``EnergyReport`` (energies under
every registered model in ``step.registry.ENERGY_MODELS``, record block, leaderboard columns).
Formulas and constants: shared/reference/energy.md.
"""

from step.energy.constants import FORMULA_VERSION, PRECISIONS
from step.energy.ops import LayerOps, OpTable
from step.energy.meter import EnergyMeter
from step.energy.report import EnergyReport
from step.energy import models  # noqa: F401  (registers simple45, memory, lemaire)

__all__ = ["EnergyMeter", "EnergyReport", "OpTable", "LayerOps", "FORMULA_VERSION", "PRECISIONS"]
