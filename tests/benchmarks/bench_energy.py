"""Overhead of energy counting: evaluation with the EnergyMeter vs without (goal: <= 1.2x).

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/bench_energy.py [--device cuda] [--rounds 7]

Runs the same evaluation passes alternately with and without the hooks and prints the median
wall time of each and their ratio. Not a test: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

import step  # noqa: F401
from step.energy import EnergyMeter
from step.registry import MODELS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import use_runner_cpu_allocator  # noqa: E402


def _evaluate(model, batches, device) -> None:
    with torch.inference_mode():
        for x in batches:
            model(x)
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def calibrate_batch_norm(model, batches) -> None:
    """Set every BN's running statistics from the data (cumulative average over the batches).

    A freshly initialised model in eval mode normalises with mean 0 / variance 1 and most of its
    neurons never fire; the counters then see all-zero spike maps, which are the cheapest case.
    Calibrated statistics give firing rates like a trained model's, so the overhead is realistic.
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for x in batches:
            model(x)
    model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--T", type=int, default=4)
    parser.add_argument("--img-size", type=int, default=32)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    use_runner_cpu_allocator()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = MODELS.build("spikformer", num_classes=10, img_size=args.img_size, in_chans=3,
                         depth=args.depth, dim=args.dim, heads=8).to(args.device).eval()
    shape = (args.T, args.batch_size, 3, args.img_size, args.img_size)
    batches = [torch.rand(shape, device=args.device) for _ in range(args.batches)]
    calibrate_batch_norm(model, batches)
    _evaluate(model, batches[:1], args.device)  # warm-up
    plain, counted = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        _evaluate(model, batches, args.device)
        plain.append(time.perf_counter() - t0)
        meter = EnergyMeter(model, T=args.T)
        t0 = time.perf_counter()
        with meter:
            _evaluate(model, batches, args.device)
        meter.report()  # includes the one synchronisation of the counters
        counted.append(time.perf_counter() - t0)
    p, c = statistics.median(plain), statistics.median(counted)
    rate = meter.report().totals["mean_firing_rate"]
    print(f"device {args.device}: without counting {p:.4f} s, with counting {c:.4f} s, ratio {c / p:.3f}x "
          f"(median of {args.rounds}; goal <= 1.2x); mean firing rate {rate:.3f}")


if __name__ == "__main__":
    main()
