"""Energy constants (pJ, 45 nm) with their sources; see shared/reference/energy.md section 3.

* E_MAC / E_AC presets: fp32 4.6 / 0.9 (Horowitz ISSCC 2014: FMult 3.7 + FAdd 0.9, used by
  Spikformer, SDT V1/V2 and syops), fp16 1.5 / 0.4, int8 0.23 / 0.03 (SpikingJelly's presets),
  int32 3.2 / 0.1 (integer mult 3.1 + add 0.1, the Lemaire et al. 2022 / Qualia setting).
* E_bit = 3.12 pJ/bit: the STEP paper's memory cost (Table 9, 24.96 pJ/byte as documented by
  SpikingJelly's ``SimpleEnergyCostConfig``).
* SRAM access of one word of b bits in a memory of n words: 13.2 + 1.09e-5 n b pJ (Qualia's fit
  through Horowitz' 8 KB / 32 KB / 1 MB cache figures, used for the Lemaire model).
"""

from __future__ import annotations

from step.errors import ConfigError

#: version of the counting conventions and formulas written into every record
FORMULA_VERSION = ("step-energy/3 (energy.md 2025: SOP=T*r*FL, exact spike ANDs, BN folded, bias adds apart; "
                   "bipolar -1/0/1 spikes: one add or subtract per non-zero; counting conventions paper, exact "
                   "(in-bounds fan-out), neurobench)")

#: precision -> (E_MAC, E_AC) in pJ
PRECISIONS: dict[str, tuple[float, float]] = {
    "fp32": (4.6, 0.9),
    "fp16": (1.5, 0.4),
    "int8": (0.23, 0.03),
    "int32": (3.2, 0.1),
}

E_BIT_STEP = 3.12
SRAM_BASE_PJ = 13.2
SRAM_SLOPE_PJ = 1.09e-5
INT8_BITS = 8


def op_energies(precision: str, e_mac: float | None = None, e_ac: float | None = None) -> tuple[float, float]:
    """(E_MAC, E_AC) of ``precision``, each overridden when given explicitly."""
    if precision not in PRECISIONS:
        raise ConfigError(
            f"Unknown energy precision '{precision}'. Valid precisions: {', '.join(PRECISIONS)} "
            "(or set e_mac and e_ac explicitly)."
        )
    mac, ac = PRECISIONS[precision]
    mac = float(mac if e_mac is None else e_mac)
    ac = float(ac if e_ac is None else e_ac)
    if mac < 0 or ac < 0:
        raise ConfigError(f"Energy constants must be >= 0 pJ, got e_mac={mac}, e_ac={ac}.")
    return mac, ac


def sram_access_pj(words: float, bits: float) -> float:
    """Energy of one access to an SRAM holding ``words`` words of ``bits`` bits (Qualia fit)."""
    return SRAM_BASE_PJ + SRAM_SLOPE_PJ * words * bits
