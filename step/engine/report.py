"""The result table a run prints at its end."""

from __future__ import annotations

from typing import Any


def format_summary(record: dict[str, Any]) -> str:
    """A small plain-text table of the run's identity, metric, energy and cost."""
    comp = record.get("components", {})
    metrics = record.get("metrics", {})
    cols = record.get("leaderboard_row", {})
    rows = [
        ("run", record.get("run_id", "")),
        ("status", record.get("status", "")),
        ("model / attention", f"{comp.get('model')} / {comp.get('attention')}"),
        ("neuron / surrogate", f"{comp.get('neuron')} / {comp.get('surrogate')} (alpha {comp.get('alpha')})"),
        ("encoder / backend / T", f"{comp.get('encoder')} / {comp.get('backend')} / {record.get('T')}"),
        ("dataset / task", f"{comp.get('dataset')} / {comp.get('task')}"),
        ("params", f"{record.get('params', 0):,}"),
    ]
    for key, value in metrics.items():
        rows.append((f"test {key}", f"{value:.2f}" if isinstance(value, float) else str(value)))
    for key in ("energy_mj", "energy_exact_mj", "energy_mem_mj", "energy_ann_mj", "energy_int8_mj", "sops", "firing_rate"):
        value = cols.get(key)
        if value not in (None, ""):
            rows.append((key, f"{value:.4g}" if isinstance(value, float) else str(value)))
    audit = (record.get("energy") or {}).get("spike_driven")
    if audit:
        offenders = [layer["name"] for layer in audit.get("non_spike_layers", [])]
        rows.append(("spike-driven", audit["verdict"] + (f" (not spikes: {', '.join(offenders)})" if offenders else "")))
    rows.append(("epochs / wall time", f"{record.get('epochs_done')} / {record.get('wall_time_s', 0):.1f} s"))
    rows.append(("record", record.get("record_path", "")))
    width = max(len(k) for k, _ in rows)
    line = "-" * (width + 3 + max(len(str(v)) for _, v in rows))
    return "\n".join([line, *(f"{k:<{width}} | {v}" for k, v in rows), line])
