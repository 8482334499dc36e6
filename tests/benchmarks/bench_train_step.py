"""Training step (forward + backward + AdamW step) of our models vs SpikingJelly 2.0's model zoo.

    WANDB_MODE=disabled .venv/bin/python tests/benchmarks/bench_train_step.py \
        [--models spikformer-4-384 sdt-2-512 qkformer-4-384] [--batch 32] [--T 4] [--repeats 5] \
        [--compile] [--memory] [--csv results/bench.csv]

Pairs (CIFAR-10 shapes, 10 classes, LIF tau 2, hard reset 0, detached reset, ATan(2) on both sides;
the peer keeps its per-site defaults such as the 0.5 attention threshold):

* ``spikformer-4-384`` vs ``spikformer_cifar10`` (9.32M vs 9.31M parameters).
* ``sdt-2-512`` vs ``SpikeDrivenTransformer(embed_dims=512, depths=2, pooling_stat='0011')``
  (10.23M each).
* ``qkformer-4-384`` vs ``QKFormer(embed_dims=384, num_heads=(8, 8, 8), depths=(1, 1, 2))``.
  SpikingJelly ships only the ImageNet layout (stem /4, stages at /4, /8, /16), ours is the CIFAR
  layout (stages at /1, /2, /4), so the peer gets 128 x 128 inputs: both then run their
  transformer stages on the same 32/16/8 token grids (see docs/performance.md).

Both sides run in this process, alternating, after a warm-up, under the CPU allocator setting
``step-train`` uses (``trainer.cpu_allocator=keep``, so neither side pays page faults for buffers
freed in the previous step); ratio = peer time / our time (goal >= 1.5). ``--compile`` adds our ``torch.compile`` mode vs the peer eager (goal >= 2; the cold
compile time is printed apart). ``--memory`` runs each side in its own subprocess and compares the
growth of the resident set (sampled every 2 ms) over two training steps (goal: ours <= peer).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Row, alternate, append_csv, table, time_ratio, use_runner_cpu_allocator  # noqa: E402

MODELS_DEFAULT = ["spikformer-4-384", "sdt-2-512", "qkformer-4-384"]
GOAL_EAGER, GOAL_COMPILED, GOAL_MEMORY = 1.5, 2.0, 1.0


def build_ours(name: str, T: int) -> torch.nn.Module:
    import step  # noqa: F401
    from step.components import default_neuron_factory
    from step.registry import MODELS

    return MODELS.build(name, num_classes=10, neuron=default_neuron_factory(T))


def build_peer(name: str, T: int) -> tuple[torch.nn.Module, int]:
    """SpikingJelly's counterpart of ``name`` and the input size it is fed."""
    logging.getLogger("torch._library.triton").setLevel(logging.ERROR)
    from spikingjelly.activation_based import surrogate
    from spikingjelly.activation_based.model import QKFormer, SpikeDrivenTransformer, spikformer_cifar10

    kw = dict(surrogate_function=surrogate.ATan(alpha=2.0), detach_reset=True, tau=2.0, v_reset=0.0)
    if name == "spikformer-4-384":
        return spikformer_cifar10(T=T, num_classes=10, **kw), 32
    if name == "sdt-2-512":
        return SpikeDrivenTransformer(T=T, num_classes=10, embed_dims=512, num_heads=8, depths=2,
                                      pooling_stat="0011", **kw), 32
    if name == "qkformer-4-384":
        return QKFormer(T=T, num_classes=10, embed_dims=384, num_heads=(8, 8, 8), depths=(1, 1, 2), **kw), 128
    raise SystemExit(f"bench_train_step: no SpikingJelly peer for {name!r}; choose from {MODELS_DEFAULT}")


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, peer: bool):
    """A closure running one AdamW training step of ``model`` on ``(x, y)``."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    reset = None
    if peer:
        from spikingjelly.activation_based import functional

        reset = functional.reset_net
    model.train()

    def run() -> None:
        opt.zero_grad(set_to_none=True)
        if reset is not None:
            reset(model)
        out = model(x)
        if out.dim() == 3:  # SpikingJelly's Spikformer returns [T, B, classes]
            out = out.mean(0)
        F.cross_entropy(out, y).backward()
        opt.step()

    return run


def inputs(T: int, batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, batch, 3, size, size, generator=g), torch.randint(0, 10, (batch,), generator=g)


def bench_pair(name: str, T: int, batch: int, repeats: int, compile_ours: bool) -> list[Row]:
    torch.manual_seed(0)
    ours = build_ours(name, T)
    peer, peer_size = build_peer(name, T)
    x, y = inputs(T, batch, 32)
    xp = x if peer_size == 32 else inputs(T, batch, peer_size)[0]
    shapes = f"T={T} B={batch} 32px (peer {peer_size}px); params {n_params(ours)} vs {n_params(peer)}"
    fns = {"ours": make_step(ours, x, y, False), "peer": make_step(peer, xp, y, True)}
    compile_s = None
    if compile_ours:
        compiled = torch.compile(build_ours(name, T))
        fns["compiled"] = make_step(compiled, x, y, False)
        t0 = time.perf_counter()
        fns["compiled"]()
        compile_s = time.perf_counter() - t0
    med = alternate(fns, repeats=repeats, warmup=2)  # two: the heap reaches its steady state
    rows = [time_ratio(f"train_step/{name}/eager", shapes, med["ours"], med["peer"], GOAL_EAGER,
                       "seconds per step; ratio = peer/ours")]
    if compile_ours:
        rows.append(time_ratio(f"train_step/{name}/compiled-vs-peer-eager", shapes, med["compiled"], med["peer"],
                               GOAL_COMPILED, f"cold compile {compile_s:.0f} s"))
    return rows


def _memory_child(side: str, name: str, T: int, batch: int) -> None:
    """Subprocess body: peak growth of the resident set (MB) over two training steps of one side."""
    if side == "ours":
        model, size = build_ours(name, T), 32
    else:
        model, size = build_peer(name, T)
    x, y = inputs(T, batch, size)
    run = make_step(model, x, y, side == "peer")
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:  # ru_maxrss cannot be reset, so sample the current RSS instead
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            done.wait(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run()
    run()
    done.set()
    sampler.join()
    print(json.dumps({"peak_growth_mb": (max(peak[0], _rss_bytes()) - before) / 2**20}))


def _rss_bytes() -> int:
    """Current resident set size (Linux /proc; falls back to ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def bench_memory(name: str, T: int, batch: int) -> Row:
    mb = {}
    for side in ("ours", "peer"):
        cmd = [sys.executable, __file__, "--memory-child", side, "--models", name, "--T", str(T), "--batch", str(batch)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        mb[side] = json.loads(out)["peak_growth_mb"]
    ratio = mb["peer"] / mb["ours"] if mb["ours"] > 0 else None
    return Row(f"train_step/{name}/peak-memory", f"T={T} B={batch}; MB of resident-set growth (peak) over 2 steps",
               mb["ours"], mb["peer"], ratio, GOAL_MEMORY, "ratio = peer/ours (>= 1: ours no higher)")


def main(argv: list[str] | None = None) -> list[Row]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS_DEFAULT)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--T", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--compile", action="store_true", help="also time our torch.compile mode")
    ap.add_argument("--memory", action="store_true", help="also compare peak memory (one subprocess per side)")
    ap.add_argument("--csv", default=None, help="append the rows to this CSV (e.g. results/bench.csv)")
    ap.add_argument("--memory-child", choices=["ours", "peer"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    use_runner_cpu_allocator()
    if args.memory_child:
        _memory_child(args.memory_child, args.models[0], args.T, args.batch)
        return []
    rows: list[Row] = []
    for name in args.models:
        rows += bench_pair(name, args.T, args.batch, args.repeats, args.compile)
        if args.memory:
            rows.append(bench_memory(name, args.T, args.batch))
        print(table(rows[-(1 + args.compile + args.memory):]), flush=True)
    if args.csv:
        append_csv(rows, args.csv)
    return rows


if __name__ == "__main__":
    main()
