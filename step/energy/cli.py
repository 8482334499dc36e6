"""``step-energy``: print a run's per-layer energy table (and, with ``--out``, save it and a chart).

    step-energy RUN/record.json                 # the table the run recorded
    step-energy RUN/model.pt                    # measured again: the model rebuilt from its own config
    step-energy RUN/model.pt --T 2 --out DIR    # at 2 time steps; energy.json and the chart in DIR
    step-energy plain.pt --model spikformer --model-arg img_size=16 --T 4   # a bare state dict

A record is read as written by the runner (its ``energy`` block). A STEP checkpoint (``model.pt`` or
``last.pt``) holds its run config: the model is rebuilt from it (any model, attention, neuron,
encoder) and measured on that config's whole test split, as the run's final evaluation was, at the
checkpoint's T or ``--T``. A plain state dict needs ``--model`` and is measured on ``--dataset``
(direct encoding). Nothing is written unless ``--out DIR`` is given: then ``DIR/energy.json`` (for a
checkpoint) and the bar chart ``DIR/<name>_firing_rates.png``.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from step.errors import StepError


def _energy_block(record: dict[str, Any], path: Path) -> dict[str, Any]:
    block = record.get("energy", record) if isinstance(record, dict) else None
    if not isinstance(block, dict) or "per_layer" not in block:
        raise StepError(f"{path} holds no energy block with a per-layer table; was the run made with energy.enabled=true?")
    return block


def _parse_kw(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise StepError(f"--model-arg expects key=value, got '{item}'.")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def measure_checkpoint(path: Path, model_name: str, T: int, dataset: str, model_args: dict[str, Any],
                       max_samples: int, batch_size: int = 64) -> dict[str, Any]:
    """Load ``path`` into ``model_name``, count on the dataset's test split, return the record block."""
    import torch
    from torch.utils.data import DataLoader, Subset

    import step  # noqa: F401  (registers everything)
    from step.energy.meter import EnergyMeter
    from step.engine.checkpoint import read
    from step.registry import DATASETS, ENCODERS, MODELS

    state = read(path)  # weights-only: a file holding other Python objects is refused before it is built

    data = DATASETS.build(dataset)
    kwargs = {"num_classes": data.num_classes, "in_chans": data.in_chans, **model_args}
    if isinstance(data.img_size, int):
        kwargs.setdefault("img_size", data.img_size)
    model = MODELS.build(model_name, **kwargs)
    if isinstance(state, dict):
        state = state.get("model", state.get("state_dict", state))
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError) as err:
        raise StepError(f"Checkpoint {path} does not fit model '{model_name}' ({kwargs}): {err}") from None
    model.eval()
    test = data.test if len(data.test) <= max_samples else Subset(data.test, range(max_samples))
    encoder = ENCODERS.build("direct", T=T)
    meter = EnergyMeter(model, T=T)
    with meter, torch.inference_mode():
        for x, _ in DataLoader(test, batch_size=batch_size):
            model(x if data.modality == "event" else encoder(x))
    return meter.report().to_record()


def plot_firing_rates(rows: list[dict[str, Any]], out: Path, title: str = "") -> Path:
    """Bar chart of each neuron layer's firing rate (or each layer's input rate if no neurons)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    neurons = [r for r in rows if r.get("kind") == "neuron"]
    if neurons:
        names, rates, label = [r["name"] for r in neurons], [r.get("output_rate") or 0.0 for r in neurons], "firing rate"
    else:
        syn = [r for r in rows if r.get("input_rate") is not None]
        names, rates, label = [r["name"] for r in syn], [r["input_rate"] for r in syn], "input rate"
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(names) + 2), 4.5))
    ax.bar(range(len(names)), rates, color="tab:blue")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=7)
    ax.set_ylabel(label)
    ax.set_title(title or f"per-layer {label}")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _print_summary(block: dict[str, Any]) -> None:
    from step.energy.report import format_layer_table

    print(format_layer_table(block["per_layer"]))
    totals = block.get("totals", {})
    print()
    for key in ("T", "n_samples", "macs", "sops", "nonspike_macs", "neuron_updates", "mean_firing_rate"):
        if key in totals:
            print(f"{key:>18}: {totals[key]:.6g}")
    for model, e in block.get("energy", {}).items():
        print(f"{model:>18}: SNN {e['snn_mj']:.6g} mJ | ANN twin {e['ann_mj']:.6g} mJ | INT8 twin {e['int8_mj']:.6g} mJ")
    conventions = block.get("by_convention")
    if conventions:
        print()
        chosen = block.get("model", "simple45")
        for name in ("paper", "exact"):
            c = conventions[name]
            print(f"{name:>18}: ACs {c['sops']:.6g} | MACs {c['nonspike_macs']:.6g} | "
                  f"{chosen} {c['energy_mj'][chosen]:.6g} mJ")
        nb = conventions["neurobench"]
        print(f"{'neurobench':>18}: Effective_ACs {nb['effective_acs']:.6g} | Effective_MACs {nb['effective_macs']:.6g} "
              f"| Dense {nb['dense']:.6g} | activation sparsity {nb['activation_sparsity']:.6g} | "
              f"connection sparsity {nb['connection_sparsity']:.4g}")
        for name in ("paper", "exact", "neurobench"):
            print(f"{name:>18}  {conventions[name]['statement']} [{conventions[name]['source']}]")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="step-energy", description=__doc__.split("\n\n")[0])
    parser.add_argument("path", help="a record.json (or energy.json), a STEP checkpoint, or a state dict (--model)")
    parser.add_argument("--out", type=Path, default=None,
                        help="folder for energy.json and the firing-rate chart (default: write nothing)")
    parser.add_argument("--T", type=int, default=None,
                        help="timesteps for a checkpoint (default: the checkpoint's own T; 4 for a state dict)")
    parser.add_argument("--model", help="registry name of the model: only for a state dict without a STEP config")
    parser.add_argument("--model-arg", action="append", default=[], metavar="KEY=VALUE",
                        help="a model keyword (repeatable, with --model), e.g. --model-arg depth=2")
    parser.add_argument("--dataset", default="digits", help="dataset whose test split is measured (with --model)")
    parser.add_argument("--max-samples", type=int, default=512, help="test samples measured (with --model)")
    args = parser.parse_args(argv)
    path = Path(args.path)
    try:
        if not path.is_file():
            raise StepError(f"No such file: {path}. Give a record.json or a checkpoint path.")
        measured = path.suffix != ".json"
        if not measured:
            try:
                block = _energy_block(json.loads(path.read_text()), path)
            except (ValueError, UnicodeDecodeError) as err:
                raise StepError(f"{path} is not a readable JSON record ({type(err).__name__}: {err}).") from None
        elif args.model:
            block = measure_checkpoint(path, args.model, args.T or 4, args.dataset, _parse_kw(args.model_arg),
                                       args.max_samples)
        else:
            block = _measure_step_checkpoint(path, args.T)
        _print_summary(block)
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            if measured:
                from step.fileio import atomic_write_text

                atomic_write_text(args.out / "energy.json", json.dumps({"energy": block}, indent=2))
                print(f"\nenergy table: {args.out / 'energy.json'}")
            png = plot_firing_rates(block["per_layer"], args.out / f"{path.stem}_firing_rates.png",
                                    title=path.parent.name)
            print(f"firing-rate chart: {png}")
    except StepError as err:
        print(f"step-energy: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def _measure_step_checkpoint(path: Path, T: int | None) -> dict[str, Any]:
    """The energy block of a STEP checkpoint, its model rebuilt from the config it holds."""
    import step  # noqa: F401  (registers everything)
    from step.engine.evaluate import measure
    from step.errors import CheckpointError

    try:
        return measure(path, energy=True, T=T)["energy"]
    except CheckpointError as err:
        if "is not a STEP checkpoint" in str(err):
            raise CheckpointError(f"{err} For a plain state dict give --model <registry name> (see step-list) "
                                  "and its --model-arg keywords.") from None
        raise


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
