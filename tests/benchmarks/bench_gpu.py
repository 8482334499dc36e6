"""GPU benchmark (``make bench-gpu``): ours vs SpikingJelly 2.0 on the same GPU, in under 5 minutes.

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/bench_gpu.py [--csv results/bench.csv]
        [--budget 270] [--only neuron train inference] [--device cpu --quick]   # (dry run on a CPU)

Rows appended to ``results/bench.csv`` (the ``machine`` column names the GPU):

* ``gpu/neuron/...``: LIF forward + backward alone, [T=4, 256, 384, 64] (a Spikformer-4-384 neuron
  at batch 256), float32 and bfloat16, ATan(2), hard reset, detached. Ours (the Triton kernels of
  step/neurons/triton_lif.py through the neuron op), our torch loop on CUDA, SpikingJelly's
  ``LIFNode(step_mode='m')`` (whatever it dispatches to: its ``cuda`` extension if built, else its
  Triton kernels; the row names it) and SpikingJelly's Triton kernels called directly
  (``spikingjelly/_ops/lif/triton.py``). ratio = peer time / our time (goal >= 1 against the
  fastest SpikingJelly path). Bandwidth rows: the bytes a fused forward + backward must move (X read
  forward, S written, X read again backward, g_S read, g_X written: 5 x T x N values) over the
  measured time, against the GPU's peak (:data:`PEAK_TBS`; goal >= 0.8).
* ``gpu/train/<model>``: one AdamW training step (forward, backward, step) under the GPU recipe
  (bf16 autocast; ours channels-last), images/s, ratio = ours / peer (goal >= 1.3 for Spikformer-4-384
  and SDT-2-512), and the peak memory the step allocates above the model and optimiser
  (``torch.cuda.max_memory_allocated``; ratio = peer / ours).
* ``gpu/inference/<model>``: eval-mode forward under ``torch.inference_mode``, images/s.

Models: Spikformer-4-384, SDT-2-512 and QKFormer HST-4-384 on CIFAR shapes (32 px, batch 64; the
peers of tests/benchmarks/bench_train_step.py, QKFormer's at 128 px for the same token grids) and
Meta-SpikeFormer-15M at 224 px (batch 32; SpikingJelly 2.0 has no Meta-SpikeFormer: ours only).
T = 4 throughout. Ours and the peer alternate after a warm-up (which also compiles the Triton
kernels). Items left when ``--budget`` seconds have passed are skipped and listed. Without CUDA
(and no ``--device cpu``) it prints why and exits 0. The exit status is 1 when a ratio misses its
goal (a ``REGRESSION`` line each), as ``make bench``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))
logging.getLogger("torch._library.triton").setLevel(logging.ERROR)

from _timing import DEFAULT_CSV, Row, append_csv, machine, table  # noqa: E402

#: peak DRAM bandwidth (TB/s) by GPU name, most specific first (vendor data sheets)
PEAK_TBS = [
    (r"GH200", 4.0), (r"H200", 4.8), (r"H100 NVL", 3.9), (r"H100 PCIe", 2.0), (r"H100|H800", 3.35),
    (r"B200", 8.0), (r"A100.*80GB", 2.039), (r"A100", 1.555), (r"L40S|L40\b", 0.864), (r"\bL4\b", 0.3),
    (r"\bA10\b", 0.6), (r"RTX 4090", 1.008), (r"V100", 0.9), (r"\bT4\b", 0.32),
]
GOAL_NEURON, GOAL_BANDWIDTH, GOAL_TRAIN = 1.0, 0.8, 1.3
TRAIN_GOALS = {"spikformer-4-384": GOAL_TRAIN, "sdt-2-512": GOAL_TRAIN}
#: model -> (image size, batch); the peer's image size comes from bench_train_step.build_peer
MODELS = {"spikformer-4-384": (32, 64), "sdt-2-512": (32, 64), "qkformer-4-384": (32, 64),
          "meta-spikeformer-15m": (224, 32)}
NEURON_SHAPE = (4, 256, 384, 64)
T = 4


def peak_bandwidth(name: str) -> float | None:
    """Peak DRAM bandwidth in TB/s of the GPU called ``name`` (None when not in the table)."""
    for pattern, tbs in PEAK_TBS:
        if re.search(pattern, name):
            return tbs
    return None


def neuron_bytes(shape: tuple[int, ...], element_size: int) -> int:
    """Bytes a fused multi-step neuron must move for one forward + backward: X in, S out (forward);
    X in again, g_S in, g_X out (backward)."""
    n = 1
    for d in shape:
        n *= d
    return 5 * n * element_size


class Clock:
    """Median seconds of callables run round-robin (CUDA events on a GPU, wall time on a CPU)."""

    def __init__(self, device: torch.device):
        self.device = device

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def median(self, fns: dict[str, Callable[[], object]], repeats: int, warmup: int) -> dict[str, float]:
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        self.sync()
        samples: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                if self.device.type == "cuda":
                    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    samples[name].append(start.elapsed_time(end) / 1e3)
                else:
                    t0 = time.perf_counter()
                    fn()
                    samples[name].append(time.perf_counter() - t0)
        return {k: statistics.median(v) for k, v in samples.items()}


# ---- the neuron alone ----------------------------------------------------------------------------
def neuron_paths(device: torch.device, dtype: torch.dtype, shape) -> tuple[dict[str, Callable], dict[str, str]]:
    """name -> a closure running one forward + backward; and notes (what each path runs)."""
    from spikingjelly.activation_based import functional, neuron, surrogate

    from step.neurons import lif_op
    from step.registry import NEURONS

    g = torch.Generator(device=device).manual_seed(0)
    x0 = (torch.randn(*shape, generator=g, device=device) * 1.5).to(dtype)
    gs = torch.randn(*shape, generator=g, device=device).to(dtype)
    ours = NEURONS.build("lif", tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True, detach_reset=True,
                         surrogate="atan", alpha=2.0).to(device)
    peer = neuron.LIFNode(tau=2.0, detach_reset=True, surrogate_function=surrogate.ATan(alpha=2.0), step_mode="m")

    def step(module, reset=None):
        def run():
            x = x0.detach().requires_grad_()
            module(x).backward(gs)
            if reset is not None:
                reset(module)
        return run

    def ours_with(choice: str):
        """Our neuron with its default kernels (auto) or its torch loop (torch), on either device."""
        from step import native

        def run():
            previous = os.environ.get("STEP_CUDA_KERNELS")
            os.environ["STEP_CUDA_KERNELS"] = choice
            native.select("torch" if choice == "torch" else None)
            try:
                step(ours)()
            finally:
                native.select(None)
                if previous is None:
                    os.environ.pop("STEP_CUDA_KERNELS")
                else:
                    os.environ["STEP_CUDA_KERNELS"] = previous
        return run

    paths = {"ours": ours_with("auto"), "ours-torch-loop": ours_with("torch"),
             "spikingjelly": step(peer, functional.reset_net)}
    notes = {"ours": lif_op.implementation(x0, surrogate="atan"), "ours-torch-loop": "torch",
             "spikingjelly": sj_implementation(device)}
    if device.type == "cuda":
        direct = sj_triton_direct(x0, gs)
        if direct is not None:
            paths["spikingjelly-triton"] = direct
            notes["spikingjelly-triton"] = "triton (called directly)"
    return paths, notes


def sj_implementation(device: torch.device) -> str:
    from spikingjelly.activation_based import functional

    try:
        return str(functional.neuron_implementation("lif", device)["implementation"])
    except Exception as err:  # noqa: BLE001 - a report, not a requirement
        return f"unknown ({type(err).__name__})"


def sj_triton_direct(x0: torch.Tensor, gs: torch.Tensor) -> Callable | None:
    """SpikingJelly's Triton LIF kernels, forward then backward, without its dispatch."""
    try:
        from spikingjelly._ops.lif import triton as sj_triton
    except Exception:  # noqa: BLE001 - triton missing or another SpikingJelly layout: skip the path
        return None
    v = torch.zeros_like(x0[0], dtype=torch.float32)
    gv = torch.zeros_like(v)

    def run():
        spikes, _, h = sj_triton._forward_impl(x0, v, 2.0, True, 1.0, 0.0, True, 2.0, False, 1)
        sj_triton._backward_impl(gs, gv, h, 2.0, True, 1.0, 0.0, True, 2.0, False, 1)
    return run


def bench_neuron(device, clock, quick: bool, gpu: str) -> list[Row]:
    shape = (2, 4, 16, 64) if quick else NEURON_SHAPE
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        paths, notes = neuron_paths(device, dtype, shape)
        med = clock.median(paths, repeats=3 if quick else 20, warmup=1 if quick else 3)
        peers = {k: v for k, v in med.items() if k.startswith("spikingjelly")}
        fastest = min(peers, key=peers.get)
        label = f"{list(shape)} {str(dtype).replace('torch.', '')}"
        rows.append(Row(f"gpu/neuron/lif-fwd-bwd/ours-vs-{fastest}", f"{device.type} {label}; seconds",
                        med["ours"], peers[fastest], peers[fastest] / med["ours"], GOAL_NEURON,
                        f"ours={notes['ours']} peer={notes[fastest]}", machine=gpu))
        for name, seconds in med.items():
            if name not in ("ours", fastest):
                rows.append(Row(f"gpu/neuron/lif-fwd-bwd/{name}", f"{device.type} {label}; seconds", med["ours"],
                                seconds, seconds / med["ours"], None, f"ours vs {name} ({notes[name]})", machine=gpu))
        peak = peak_bandwidth(gpu) if device.type == "cuda" else None
        moved = neuron_bytes(shape, torch.tensor([], dtype=dtype).element_size())
        for name in ("ours", fastest):
            achieved = moved / med[name] / 1e12
            rows.append(Row(f"gpu/neuron/bandwidth/{name}", f"{device.type} {label}; TB/s (5 x T x N values moved)",
                            achieved, peak, achieved / peak if peak else None,
                            GOAL_BANDWIDTH if name == "ours" and peak else None,
                            "ratio = achieved / peak" if peak else "no peak bandwidth known for this device",
                            machine=gpu))
    return rows


# ---- models ------------------------------------------------------------------------------------------
#: --quick (a dry run of every path on a CPU): the same model classes, shrunk
QUICK_OURS = {"spikformer-4-384": dict(depth=1, dim=64, heads=2), "sdt-2-512": dict(depth=1, dim=64, heads=2),
              "qkformer-4-384": dict(depth=3, dim=64, heads=2),
              "meta-spikeformer-15m": dict(dims=[8, 16, 32, 64, 64], depths=[1, 1, 1, 1, 1], heads=2)}


def quick_peer(name: str):
    """SpikingJelly's model of ``name`` shrunk like :data:`QUICK_OURS`, and its input size."""
    from spikingjelly.activation_based import surrogate
    from spikingjelly.activation_based.model import QKFormer, SpikeDrivenTransformer, Spikformer

    kw = dict(surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True, tau=2.0, v_reset=0.0)
    if name == "spikformer-4-384":
        return Spikformer(T=T, img_size_h=32, img_size_w=32, patch_size=4, num_classes=10, embed_dims=64,
                          num_heads=2, depths=1, **kw), 32
    if name == "sdt-2-512":
        return SpikeDrivenTransformer(T=T, num_classes=10, embed_dims=64, num_heads=2, depths=1,
                                      pooling_stat="0011", **kw), 32
    return QKFormer(T=T, num_classes=10, embed_dims=64, num_heads=(2, 2, 2), depths=(1, 1, 1), **kw), 128


def build_pair(name: str, device: torch.device, quick: bool):
    """(ours, peer or None, our input, peer input, labels, shapes)."""
    import bench_train_step as bts

    import step  # noqa: F401
    from step.components import default_neuron_factory
    from step.layers.fold import set_channels_last
    from step.registry import MODELS as REGISTRY

    size, batch = MODELS[name]
    if quick:
        size, batch = min(size, 64), 2
    set_channels_last(device.type == "cuda")  # the GPU recipe (trainer=gpu); off for a CPU dry run
    torch.manual_seed(0)
    classes = 1000 if size > 64 else 10
    ours = REGISTRY.build(name, num_classes=classes, img_size=size, neuron=default_neuron_factory(T),
                          **(QUICK_OURS[name] if quick else {})).to(device)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(T, batch, 3, size, size, generator=g).to(device)
    y = torch.randint(0, classes, (batch,), generator=g).to(device)
    peer, xp = None, None
    if name in ("spikformer-4-384", "sdt-2-512", "qkformer-4-384"):
        peer, peer_size = quick_peer(name) if quick else bts.build_peer(name, T)
        peer = peer.to(device)
        xp = x if peer_size == size else torch.rand(T, batch, 3, peer_size, peer_size, generator=g).to(device)
    return ours, peer, x, xp, y, f"T={T} B={batch} {size}px" + (" (shrunk: --quick)" if quick else "")


def autocast(device: torch.device):
    """bf16 autocast on a GPU (the GPU recipe); none on a CPU dry run (CPU bf16 is emulated: slow)."""
    import contextlib

    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()


def train_step(model, x, y, device, peer: bool) -> Callable[[], None]:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    reset = None
    if peer:
        from spikingjelly.activation_based import functional

        reset = functional.reset_net
    model.train()

    def run():
        opt.zero_grad(set_to_none=True)
        if reset is not None:
            reset(model)
        with autocast(device):
            out = model(x)
            if out.dim() == 3:  # SpikingJelly's Spikformer returns [T, B, classes]
                out = out.mean(0)
            loss = F.cross_entropy(out.float(), y)
        loss.backward()
        opt.step()
    return run


def infer(model, x, device, peer: bool) -> Callable[[], None]:
    reset = None
    if peer:
        from spikingjelly.activation_based import functional

        reset = functional.reset_net

    def run():
        with torch.inference_mode(), autocast(device):
            if reset is not None:
                reset(model)
            model(x)
    return run


def peak_memory_mb(fn: Callable[[], None], device: torch.device) -> float | None:
    """MB the step allocates above what was allocated before it (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def bench_model(name: str, device, clock, quick: bool, gpu: str, kinds: list[str]) -> list[Row]:
    ours, peer, x, xp, y, shapes = build_pair(name, device, quick)
    batch = x.shape[1]
    reps, warm = (2, 1) if quick else ((10, 3) if x.shape[-1] <= 64 else (6, 2))
    rows = []
    if "train" in kinds:
        fns = {"ours": train_step(ours, x, y, device, False)}
        if peer is not None:
            fns["peer"] = train_step(peer, xp, y, device, True)
        med = clock.median(fns, repeats=reps, warmup=warm)
        ips = {k: batch / v for k, v in med.items()}
        ratio = ips["ours"] / ips["peer"] if "peer" in ips else None
        rows.append(Row(f"gpu/train/{name}", f"{device.type} {shapes} {precision(device)}; images/s", ips["ours"],
                        ips.get("peer"), ratio, TRAIN_GOALS.get(name) if peer is not None else None,
                        "ratio = ours/peer images/s" if peer is not None else "no SpikingJelly peer", machine=gpu))
        mem = {k: peak_memory_mb(fn, device) for k, fn in fns.items()}
        if mem["ours"] is not None:
            rows.append(Row(f"gpu/train-peak-memory/{name}", f"{device.type} {shapes}; MB above the model",
                            mem["ours"], mem.get("peer"), mem["peer"] / mem["ours"] if mem.get("peer") else None, None,
                            "ratio = peer/ours (> 1: ours smaller)", machine=gpu))
    if "inference" in kinds:
        ours.eval()
        fns = {"ours": infer(ours, x, device, False)}
        if peer is not None:
            peer.eval()
            fns["peer"] = infer(peer, xp, device, True)
        med = clock.median(fns, repeats=reps, warmup=warm)
        ips = {k: batch / v for k, v in med.items()}
        rows.append(Row(f"gpu/inference/{name}", f"{device.type} {shapes} {precision(device)}; images/s", ips["ours"],
                        ips.get("peer"), ips["ours"] / ips["peer"] if "peer" in ips else None, None,
                        "ratio = ours/peer images/s" if peer is not None else "no SpikingJelly peer", machine=gpu))
    del ours, peer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return rows


def precision(device: torch.device) -> str:
    return "bf16 autocast" if device.type == "cuda" else "float32"


def regressions(rows: list[Row]) -> list[str]:
    return [f"REGRESSION: {r.benchmark}: ratio {r.ratio:.3f} below its goal {r.goal:g}" for r in rows
            if r.status == "REGRESSION"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a dry run of every path")
    ap.add_argument("--only", nargs="+", default=["neuron", "train", "inference"],
                    choices=["neuron", "train", "inference"])
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--budget", type=float, default=270.0, help="seconds; items left after it are skipped")
    ap.add_argument("--csv", default=None, help=f"default: {DEFAULT_CSV.name} under results/ (a --quick dry run "
                    "appends nowhere unless given one)")
    args = ap.parse_args(argv)
    if args.csv is None and not args.quick:
        args.csv = str(DEFAULT_CSV)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here, nothing measured. Run `make bench-gpu` on a machine with a GPU "
              "(or `tests/benchmarks/bench_gpu.py --device cpu --quick` for a dry run of every path).")
        return 0
    started = time.perf_counter()
    gpu = f"{torch.cuda.get_device_name(device)} / {machine()}" if device.type == "cuda" else machine()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    print(f"bench_gpu on {gpu}; torch {torch.__version__}; budget {args.budget:.0f} s", flush=True)
    clock = Clock(device)
    items: list[tuple[str, Callable[[], list[Row]]]] = []
    if "neuron" in args.only:
        items.append(("neuron", lambda: bench_neuron(device, clock, args.quick, gpu)))
    kinds = [k for k in ("train", "inference") if k in args.only]
    if kinds:
        for name in args.models:
            items.append((name, lambda name=name: bench_model(name, device, clock, args.quick, gpu, kinds)))
    rows: list[Row] = []
    skipped: list[str] = []
    failures: list[str] = []
    for label, job in items:
        if time.perf_counter() - started > args.budget:
            skipped.append(label)
            continue
        t0 = time.perf_counter()
        try:
            new = job()
        except Exception as err:  # noqa: BLE001 - one broken item must not cost the others their loan
            import traceback

            traceback.print_exc()
            failures.append(f"REGRESSION: {label} failed to run: {type(err).__name__}: {err}")
            continue
        rows += new
        print(table(new), f"\n({label}: {time.perf_counter() - t0:.0f} s)", flush=True)
    if device.type != "cuda":  # a dry run: the goals are the GPU's
        for row in rows:
            row.goal = None
    if rows and args.csv:
        append_csv(rows, args.csv)
    print()
    print(table(rows))
    where = f"appended {len(rows)} rows to {args.csv}" if args.csv else f"{len(rows)} rows (no --csv: not saved)"
    print(f"\n{where} in {time.perf_counter() - started:.0f} s")
    if skipped:
        print(f"SKIPPED (budget of {args.budget:.0f} s spent): {', '.join(skipped)}")
    lines = failures + regressions(rows)
    for line in lines:
        print(line)
    return 1 if lines else 0


if __name__ == "__main__":
    os.environ.setdefault("WANDB_MODE", "disabled")
    sys.exit(main())
