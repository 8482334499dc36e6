"""Where a training step goes: torch.profiler self time by category, ours vs SpikingJelly.

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/profile_train_step.py \
        [--models spikformer-4-384 sdt-2-512 qkformer-4-384] [--batch 4] [--T 4] [--steps 2]

For each pair of ``bench_train_step.py`` it runs three untimed steps per side (the heap reaches
its steady state), profiles ``--steps`` steps, and prints the self CPU time per step of each
category (GEMM, convolution, batch norm, neuron, optimizer, other element-wise, copies) for both
sides, the dense multiply-accumulates of our step (counted by ``step.energy`` on the forward, x3
for forward + backward) and the rate our GEMM and convolution kernels reach on them. The last
line is the bound on ``peer / ours``: the peer's step over our GEMM + convolution + batch-norm +
optimizer time, i.e. the ratio if everything else in our step cost nothing. Profiling adds
overhead, so read shares and the bound, not absolute seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import use_runner_cpu_allocator  # noqa: E402
from bench_train_step import MODELS_DEFAULT, build_ours, build_peer, inputs, make_step  # noqa: E402

CATEGORIES = {
    "gemm": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm"),
    "conv": ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "neuron": ("_NeuronOp", "_NeuronOpBackward", "step::lif_forward", "step::lif_backward", "sj_lif::forward",
               "sj_lif::backward", "_SurrogateSpike",
               "_SurrogateSpikeBackward"),
    "optimizer": ("Optimizer.step#AdamW.step", "aten::lerp_", "aten::addcdiv_", "aten::addcmul_", "aten::sqrt",
                  "aten::_foreach_lerp_", "aten::_foreach_addcdiv_", "aten::_foreach_addcmul_",
                  "aten::_foreach_sqrt", "aten::_foreach_mul_", "aten::_foreach_add_", "aten::_foreach_div_"),
    "pooling": ("aten::max_pool2d_with_indices", "aten::max_pool2d_with_indices_backward"),
    "copies and fills": ("aten::copy_", "aten::fill_", "aten::zero_", "aten::cat", "aten::stack", "aten::clone"),
    "element-wise": ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::ge", "aten::reciprocal",
                     "aten::neg", "aten::add_", "aten::mul_", "aten::sum", "aten::where", "aten::sigmoid"),
}


def categorise(events) -> dict[str, float]:
    """Seconds of self CPU time per category (everything unnamed goes to ``other``)."""
    out = {name: 0.0 for name in (*CATEGORIES, "other")}
    lookup = {op: cat for cat, ops in CATEGORIES.items() for op in ops}
    for e in events:
        out[lookup.get(e.key, "other")] += e.self_cpu_time_total / 1e6
    return out


def profile_side(run, steps: int) -> dict[str, float]:
    from torch.profiler import ProfilerActivity, profile

    for _ in range(3):
        run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run()
    return {k: v / steps for k, v in categorise(prof.key_averages()).items()}


def training_macs(model: torch.nn.Module, x: torch.Tensor, T: int) -> float:
    """Dense MACs of one training step: the forward's (counted on this batch) x 3."""
    from step.energy import EnergyMeter

    meter = EnergyMeter(model, T=T)
    with meter, torch.no_grad():
        model(x)
    table = meter.table()
    per_sample = sum(row.macs_executed or 0.0 for row in table.layers if row.kind in ("conv", "linear", "matmul"))
    return 3 * per_sample * x.shape[1]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS_DEFAULT)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    use_runner_cpu_allocator()
    for name in args.models:
        torch.manual_seed(0)
        ours = build_ours(name, args.T)
        peer, size = build_peer(name, args.T)
        x, y = inputs(args.T, args.batch, 32)
        xp = x if size == 32 else inputs(args.T, args.batch, size)[0]
        mine = profile_side(make_step(ours, x, y, False), args.steps)
        theirs = profile_side(make_step(peer, xp, y, True), args.steps)
        macs = training_macs(ours, x, args.T)
        total_o, total_p = sum(mine.values()), sum(theirs.values())
        print(f"\n{name}: T={args.T} batch {args.batch}, self CPU seconds per step (profiled)")
        print(f"  {'category':18s} {'ours':>8s} {'share':>6s} {'peer':>8s} {'share':>6s}")
        for cat in mine:
            print(f"  {cat:18s} {mine[cat]:8.3f} {mine[cat] / total_o:6.1%} {theirs[cat]:8.3f} {theirs[cat] / total_p:6.1%}")
        print(f"  {'total':18s} {total_o:8.3f} {'':6s} {total_p:8.3f}")
        dense = mine["gemm"] + mine["conv"]
        print(f"  our step: {macs / 1e9:.1f} G dense MACs (forward x 3); our GEMM + conv kernels run them at "
              f"{2 * macs / dense / 1e9:.0f} GFLOP/s")
        floor = dense + mine["batch norm"] + mine["optimizer"]
        print(f"  bound on peer/ours if neurons, copies and element-wise ops cost nothing: {total_p / floor:.2f}x "
              f"(profiled ratio {total_p / total_o:.2f}x)")


if __name__ == "__main__":
    main()
