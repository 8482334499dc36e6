"""What a run keeps of its energy measurement: totals, per-layer table, energies, record block."""

from __future__ import annotations

from typing import Any, Mapping

from step.energy.constants import FORMULA_VERSION, op_energies
from step.energy.conventions import neurobench_block, statement
from step.energy.ops import OpTable
from step.registry import ENERGY_MODELS

#: runner keys of an energy config that are not energy-model keywords
RUNNER_KEYS = ("name", "enabled", "encoder_per_step", "skip_zero_weights")
#: the model whose SNN energy is the leaderboard's energy_mem_mj
MEMORY_MODEL = "memory"

PJ_PER_MJ = 1e9


def split_energy_cfg(energy_cfg: Mapping[str, Any] | None) -> tuple[str, bool | None, dict[str, Any]]:
    """(model name, encoder_per_step or None, model keywords) of a ``conf/energy/*.yaml`` node."""
    if energy_cfg is None:
        return "simple45", None, {}
    if hasattr(energy_cfg, "_metadata"):  # an OmegaConf node
        from omegaconf import OmegaConf

        energy_cfg = OmegaConf.to_container(energy_cfg, resolve=True)  # type: ignore[assignment]
    cfg = dict(energy_cfg)  # type: ignore[arg-type]
    name = str(cfg.get("name", "simple45"))
    per_step = cfg.get("encoder_per_step")
    constants = {k: v for k, v in cfg.items() if k not in RUNNER_KEYS}
    ENERGY_MODELS.check_kwargs(name, constants)
    return name, (None if per_step is None else bool(per_step)), constants


def _mj(pj: float) -> float:
    return pj / PJ_PER_MJ


class EnergyReport:
    """Energy and firing-rate results of one measured evaluation (per inference = per sample)."""

    def __init__(self, table: OpTable):
        self.table = table

    # -- counts -----------------------------------------------------------------------------
    @property
    def totals(self) -> dict[str, Any]:
        return self.table.totals()

    @property
    def per_layer(self) -> list[dict[str, Any]]:
        """One dict per counted module, with its energy in pJ under simple45's defaults (``energy_pj``:
        paper convention, ``energy_exact_pj``: exact convention)."""
        return self._rows(self.energy("simple45"), self.energy("simple45", table=self.table.under("exact")))

    def _rows(self, result: dict[str, Any], exact: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        for row, pj, exact_pj in zip(self.table.layers, result["per_layer_pj"], exact["per_layer_pj"]):
            d = row.as_dict()
            d["energy_pj"] = pj
            d["energy_exact_pj"] = exact_pj
            rows.append(d)
        return rows

    # -- energies ---------------------------------------------------------------------------
    def energy(self, model_name: str = "simple45", *, table: OpTable | None = None, **constants: Any) -> dict[str, Any]:
        """The energy model ``model_name`` (a ``step.registry.ENERGY_MODELS`` entry) on this table."""
        return ENERGY_MODELS.build(model_name, ops=table or self.table, **constants)

    def _all_models(self, name: str, constants: dict[str, Any], table: OpTable) -> dict[str, dict[str, Any]]:
        out = {}
        for model in ENERGY_MODELS.names():
            result = self.energy(model, table=table, **(constants if model == name else {}))
            out[model] = {
                "snn_pj": result["snn_pj"], "snn_mj": _mj(result["snn_pj"]),
                "ann_pj": result["ann_pj"], "ann_mj": _mj(result["ann_pj"]),
                "int8_pj": result["int8_pj"], "int8_mj": _mj(result["int8_pj"]),
                "int8_dense_pj": result["int8_dense_pj"], "int8_dense_mj": _mj(result["int8_dense_pj"]),
                "snn_terms_pj": result["snn_terms_pj"], "ann_terms_pj": result["ann_terms_pj"],
                "int8_terms_pj": result["int8_terms_pj"], "constants": result["constants"],
            }
            if "weights_pj_by_reuse" in result:
                out[model]["weights_pj_by_reuse"] = result["weights_pj_by_reuse"]
        return out

    def _table_for(self, per_step: bool | None) -> OpTable:
        if per_step is None or per_step == self.table.encoder_per_step:
            return self.table
        return self.table.with_encoder_per_step(per_step)

    def to_record(self, energy_cfg: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-serialisable ``energy`` block of ``record.json``."""
        name, per_step, constants = split_energy_cfg(energy_cfg)
        table = self._table_for(per_step)
        chosen = self.energy(name, table=table, **constants)
        conventions = {}
        for label, flag in (("encoder_once", False), ("encoder_per_step", True)):
            t = table.with_encoder_per_step(flag)
            conventions[label] = {
                "nonspike_macs": t.totals()["nonspike_macs"],
                "energy_mj": {m: v["snn_mj"] for m, v in self._all_models(name, constants, t).items()},
            }
        exact_table = table.under("exact")
        mac, ac = op_energies(chosen["constants"]["precision"], chosen["constants"]["e_mac"], chosen["constants"]["e_ac"])
        paper_totals = table.totals()
        exact_totals = exact_table.totals()
        by_convention = {
            "paper": {**statement("paper"), "sops": paper_totals["sops"], "nonspike_macs": paper_totals["nonspike_macs"],
                      "energy_mj": {m: v["snn_mj"] for m, v in self._all_models(name, constants, table).items()}},
            "exact": {**statement("exact"), "skip_zero_weights": table.skip_zero_weights,
                      "sops": exact_totals["sops"], "nonspike_macs": exact_totals["nonspike_macs"],
                      "paper_minus_exact": paper_totals["paper_minus_exact"],
                      "energy_mj": {m: v["snn_mj"] for m, v in self._all_models(name, constants, exact_table).items()}},
            "neurobench": neurobench_block(table, mac, ac),
        }
        return {
            "version": FORMULA_VERSION,
            "model": name,
            "by_convention": by_convention,
            "constants": chosen["constants"],
            "conventions": {
                "encoder_per_step": table.encoder_per_step,
                "per": "inference (one sample); SOPs include the factor T",
                "sop": "T x input rate x dense MACs (value-weighted for integer spikes); exact AND count "
                       "for binary x binary products; rate of the binary operand x m k n for binary x real",
                "binary_test": "run time: binary = every input value in {0, 1}; ternary = in {-1, 0, 1}; integer spikes: "
                               "integer values (a value v is |v| accumulates)",
                "encoder": "first synaptic layer with a real-valued input; MACs once per inference "
                           "(SDT) or once per timestep (syops); both figures under 'encoder_conventions'",
                "norm": "BatchNorm folded into the preceding layer (norm_ops reported, not charged)",
                "pool": "pooling comparisons/adds reported (pool_ops), not charged",
                "bias": "bias adds counted apart, charged at E_AC when charge_bias",
                "ann_twin": "same architecture, one pass, dense MACs at E_MAC (+ the model's memory terms)",
                "int8_twin": "bit-serial QANN whose activations are the SNN's spike counts over T: "
                             "int8 E_AC x 1-bits x fan-out (dense int8 MACs on real-valued inputs "
                             "and attention products); int8_dense: int8 E_MAC x dense MACs",
            },
            "totals": table.totals(),
            "energy": self._all_models(name, constants, table),
            "encoder_conventions": conventions,
            "per_layer": self._rows(chosen, self.energy(name, table=exact_table, **constants)),
        }

    def columns(self, energy_cfg: Mapping[str, Any] | None = None) -> dict[str, float]:
        """The leaderboard columns."""
        name, per_step, constants = split_energy_cfg(energy_cfg)
        table = self._table_for(per_step)
        chosen = self.energy(name, table=table, **constants)
        mem = self.energy(MEMORY_MODEL, table=table, **(constants if name == MEMORY_MODEL else {}))
        exact = self.energy(name, table=table.under("exact"), **constants)
        totals = table.totals()
        return {
            "energy_mj": _mj(chosen["snn_pj"]),
            "energy_exact_mj": _mj(exact["snn_pj"]),
            "energy_mem_mj": _mj(mem["snn_pj"]),
            "energy_ann_mj": _mj(chosen["ann_pj"]),
            "energy_int8_mj": _mj(chosen["int8_pj"]),
            "sops": totals["sops"],
            "firing_rate": totals["mean_firing_rate"],
        }

    # -- display ----------------------------------------------------------------------------
    def to_text(self, rows: list[dict[str, Any]] | None = None) -> str:
        return format_layer_table(rows if rows is not None else self.per_layer)


def format_layer_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of per-layer rows (from ``per_layer`` or a record).

    Operations per inference under the three conventions: ``paper`` (SOPs, or MACs on real-valued
    inputs), ``exact`` and ``neurobench`` (effective ACs or MACs; empty for layers NeuroBench does not
    see), and the energy in pJ under paper and exact. A record from before the conventions shows
    empty exact / neurobench cells.
    """
    head = (f"{'layer':<34} {'type':<16} {'MACs/step':>11} {'in rate':>7} {'bin':>4} {'paper ops':>11} "
            f"{'exact ops':>11} {'NB ops':>11} {'out rate':>8} {'paper pJ':>11} {'exact pJ':>11}")
    lines = [head, "-" * len(head)]
    for r in rows:
        rate = "" if r.get("input_rate") is None else f"{r['input_rate']:.4f}"
        out = "" if r.get("output_rate") is None else f"{r['output_rate']:.4f}"
        synaptic = r.get("kind") in ("conv", "linear", "matmul")
        binary = _spike_kind(r) if synaptic else ""
        paper = exact = nb = ""
        if synaptic:
            paper = f"{(r.get('sops') or r.get('nonspike_macs') or 0):.4g}"
            exact = "" if "exact_ops" not in r else f"{r['exact_ops']:.4g}"
            nb = f"{r['nb_ops']:.4g}{'' if r.get('nb_spiking') else 'M'}" if r.get("nb_seen") else ""
        exact_pj = "" if "energy_exact_pj" not in r else f"{r['energy_exact_pj']:.4g}"
        lines.append(
            f"{str(r['name'])[:34]:<34} {str(r['type'])[:16]:<16} {r.get('macs', 0):>11.4g} {rate:>7} "
            f"{binary:>4} {paper:>11} {exact:>11} {nb:>11} {out:>8} {r.get('energy_pj', 0):>11.4g} {exact_pj:>11}"
        )
    lines.append("paper ops: SOPs (MACs on real-valued inputs); NB ops: NeuroBench effective ACs, M = MACs")
    return "\n".join(lines)


def _spike_kind(row: dict) -> str:
    """The 'bin' column: yes (binary), ter (bipolar), int (multi-bit spikes) or no (real values)."""
    if row.get("binary"):
        return "yes"
    if row.get("ternary"):
        return "ter"
    return "int" if row.get("integer") else "no"
