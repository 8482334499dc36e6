"""Benchmark: native multi-step LIF forward+backward vs SpikingJelly 2.0's eager LIFNode.

Shape [T=4, B=32, 24576] float32 on CPU, tau 2, hard reset to 0, detached reset, sigmoid(4).
Paths: ``native-eager`` (the default: the C kernel of step/native/lif.c, or the torch loop
where no C compiler works), ``native-torch`` (the torch loop, ``STEP_KERNELS=torch``) and
``native-compiled`` (``trainer.compile_neurons=true``). Prints the median of each path, the speed
ratio against SpikingJelly and the first-compile time of the compiled path, after checking that
every path gives bit-identical spikes and input gradients.

    python tests/benchmarks/bench_neuron.py [--reps 20] [--no-compile] [--csv results/bench.csv]
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from step import native  # noqa: E402
from step.neurons import kernels  # noqa: E402
from step.registry import NEURONS  # noqa: E402

SHAPE = (4, 32, 24576)


def step_once(neuron, x: torch.Tensor, g: torch.Tensor):
    x = x.detach().requires_grad_()
    s = neuron(x)
    (s * g).sum().backward()
    return s.detach(), x.grad


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile path")
    ap.add_argument("--csv", default=None, help="append one row per path to this CSV file")
    args = ap.parse_args()

    from spikingjelly.activation_based import functional, neuron, surrogate

    torch.manual_seed(0)
    x = torch.randn(*SHAPE) * 1.5
    g = torch.randn(*SHAPE)
    sj = neuron.LIFNode(tau=2.0, detach_reset=True, surrogate_function=surrogate.Sigmoid(alpha=4.0), step_mode="m")
    ours = NEURONS.build("lif", tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                         surrogate="sigmoid", alpha=4.0)

    def run_sj():
        out = step_once(sj, x, g)
        functional.reset_net(sj)
        return out

    ref_s, ref_g = run_sj()
    # native-eager: the default path (the C kernel when it builds); native-torch: the torch loop it
    # falls back to; native-compiled: trainer.compile_neurons=true (torch.compile of the torch loop)
    settings = {"native-eager": ("auto", False), "native-torch": ("torch", False)}
    if not args.no_compile:
        settings["native-compiled"] = ("torch", True)

    def configure(name: str) -> None:
        kernel, compiled = settings[name]
        native.select(kernel)
        kernels.enable_compile(compiled)

    paths = {name: (lambda: step_once(ours, x, g)) for name in settings}
    compile_s = None
    if not args.no_compile:
        configure("native-compiled")
        t0 = time.perf_counter()
        step_once(ours, x, g)
        compile_s = time.perf_counter() - t0

    rows = []
    for name, fn in paths.items():
        configure(name)
        s, gx = fn()
        identical = torch.equal(s, ref_s) and torch.equal(gx, ref_g)
        for _ in range(2):
            fn()
        rows.append((name, fn, identical))
    # round-robin, so that load from other processes hits every path alike
    timed = [("spikingjelly-eager", run_sj)] + [(name, fn) for name, fn, _ in rows]
    samples: dict[str, list[float]] = {name: [] for name, _ in timed}
    for _ in range(args.reps):
        for name, fn in timed:
            if name in settings:
                configure(name)
            samples[name].append(median_ms(fn, 1))
    results = {name: statistics.median(v) for name, v in samples.items()}
    configure("native-eager")
    implementation = native.implementation("lif")
    kernels.enable_compile(False)
    native.select(None)

    base = results["spikingjelly-eager"]
    print(f"LIF fwd+bwd {list(SHAPE)} float32, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"  spikingjelly-eager   {base:8.2f} ms")
    print(f"  (native-eager runs the {implementation} kernel)")
    for name, _, identical in rows:
        print(f"  {name:20s} {results[name]:8.2f} ms   speed-up x{base / results[name]:.2f}   "
              f"bit-identical={identical}")
    if compile_s is not None:
        print(f"  first call of native-compiled (compile + run): {compile_s:.1f} s")

    if args.csv:
        path = Path(args.csv)
        path.parent.mkdir(parents=True, exist_ok=True)
        new = not path.exists()
        with path.open("a", newline="") as f:
            w = csv.writer(f)
            if new:
                w.writerow(["benchmark", "path", "median_ms", "baseline_ms", "speedup", "bit_identical",
                            "first_compile_s", "threads", "torch", "machine"])
            for name, _, identical in rows:
                w.writerow(["lif_fwd_bwd_4x32x24576", name, f"{results[name]:.3f}", f"{base:.3f}",
                            f"{base / results[name]:.3f}", identical,
                            f"{compile_s:.1f}" if name == "native-compiled" and compile_s else "",
                            torch.get_num_threads(), torch.__version__, platform.processor() or platform.machine()])
        print(f"appended {len(rows)} rows to {path}")


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    main()
