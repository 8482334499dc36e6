"""Inference throughput (images/s) of one model of every registered family at CIFAR size.

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/bench_inference.py \
        [--batch 8] [--T 4] [--repeats 5] [--device cpu|cuda] [--csv results/bench.csv]

Each family is run at 32 x 32 inputs under ``torch.inference_mode`` in eval mode. Where
SpikingJelly 2.0 ships the same family (Spikformer, SDT, QKFormer; the peers of
``bench_train_step``) the peer runs alternately in the same process and ratio = our images/s /
peer images/s; the other families have no peer and are recorded for tracking only (no goal).
The device is part of the recorded shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Row, alternate, append_csv, table, use_runner_cpu_allocator  # noqa: E402
from bench_train_step import build_ours, build_peer, inputs  # noqa: E402

#: one model per registered family, at (or adapted to) 32 px
FAMILIES = {
    "spikformer": ("spikformer-4-384", {}),
    "sdt": ("sdt-2-512", {}),
    "qkformer": ("qkformer-4-384", {}),
    "meta-spikeformer": ("meta-spikeformer-cifar", {}),
    "semm-spikformer": ("semm-spikformer-4-384", {}),
    "int8-twin": ("int8-twin", {"base": "spikformer-4-384"}),
}
PEERS = {"spikformer-4-384", "sdt-2-512", "qkformer-4-384"}


def _build(name: str, kwargs: dict, T: int) -> torch.nn.Module:
    if not kwargs:
        return build_ours(name, T)
    import step  # noqa: F401
    from step.components import default_neuron_factory
    from step.registry import MODELS

    return MODELS.build(name, num_classes=10, neuron=default_neuron_factory(T), **kwargs)


def _infer(model: torch.nn.Module, x: torch.Tensor, reset=None):
    def run() -> None:
        with torch.inference_mode():
            if reset is not None:
                reset(model)
            model(x)

    return run


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--families", nargs="+", default=list(FAMILIES))
    ap.add_argument("--csv", default=None)
    args = ap.parse_args(argv)
    use_runner_cpu_allocator()
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else None
    rows: list[Row] = []
    for family in args.families:
        name, kw = FAMILIES[family]
        torch.manual_seed(0)
        model = _build(name, kw, args.T).to(dev).eval()
        x = inputs(args.T, args.batch, 32)[0].to(dev)
        fns = {"ours": _infer(model, x)}
        if name in PEERS and not kw:
            from spikingjelly.activation_based import functional

            peer, size = build_peer(name, args.T)
            xp = x if size == 32 else inputs(args.T, args.batch, size)[0].to(dev)
            fns["peer"] = _infer(peer.to(dev).eval(), xp, functional.reset_net)
        med = alternate(fns, repeats=args.repeats, warmup=1, sync=sync)
        ours = args.batch / med["ours"]
        peer = args.batch / med["peer"] if "peer" in med else None
        label = name if not kw else f"{name}({', '.join(f'{k}={v}' for k, v in kw.items())})"
        rows.append(Row(f"inference/{label}", f"{args.device} T={args.T} B={args.batch} 32px; images/s",
                        ours, peer, ours / peer if peer else None, None,
                        "ratio = ours/peer images/s" if peer else "no SpikingJelly peer"))
        print(table(rows[-1:]), flush=True)
    if args.csv:
        append_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
