"""Distributed data parallel: data sharding facts, and a real 2-process gloo run under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch.utils.data import DistributedSampler

from step.config import compose
from step.engine import run
from step.engine.distributed import DistInfo, ShardSampler, per_rank_batch, unwrap
from step.engine.evaluate import evaluate_checkpoint
from step.errors import ConfigError
from step.results.record import record_file

ROOT = Path(__file__).resolve().parents[1]
TINY = ["model.depth=1", "model.dim=16", "model.heads=2", "T=2", "trainer.max_batches=3",
        "trainer.batch_size=16", "trainer.eval_batch_size=32", "trainer.progress=false",
        "dataset.test_fraction=0.05", "energy.enabled=false", "logger=none", "trainer.epochs=1",
        "trainer.device=cpu", "sched=none"]


def test_two_ranks_with_half_batches_see_the_same_global_batches_as_one_process():
    n, world, global_batch, epoch = 50, 2, 8, 3
    one = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=7)
    one.set_epoch(epoch)
    order = list(one)
    shards = []
    for rank in range(world):
        s = DistributedSampler(range(n), num_replicas=world, rank=rank, shuffle=True, seed=7)
        s.set_epoch(epoch)
        shards.append(list(s))
    b = per_rank_batch(global_batch, DistInfo(world_size=world))
    for i in range(n // global_batch):
        union = set().union(*(set(sh[i * b:(i + 1) * b]) for sh in shards))
        assert union == set(order[i * global_batch:(i + 1) * global_batch])


def test_shard_sampler_covers_the_test_split_exactly_once():
    shards = [list(ShardSampler(11, DistInfo(rank=r, world_size=3))) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(s) for s in shards] == [4, 4, 3]  # no padding, no repeats


def test_global_batch_must_split_evenly_over_processes():
    assert per_rank_batch(64, DistInfo(world_size=4)) == 16
    with pytest.raises(ConfigError, match="trainer.batch_size=30 .* divisible by the 4 processes"):
        per_rank_batch(30, DistInfo(world_size=4))


def test_unwrap_reaches_the_module_inside_ddp_and_compile_wrappers():
    inner = torch.nn.Linear(2, 2)

    class Compiled(torch.nn.Module):  # what torch.compile returns keeps the module as _orig_mod
        def __init__(self):
            super().__init__()
            self._orig_mod = inner

    assert unwrap(Compiled()) is inner and unwrap(inner) is inner


def test_torchrun_two_gloo_processes_match_one_process_and_write_one_record(isolated_roots):
    """2 CPU processes (gloo, per-rank batch 8) against 1 process (batch 16), same global batches.

    Tolerances: BatchNorm normalises each rank's 8 samples on its own (SyncBatchNorm is CUDA-only),
    so training is not bit-identical; the test loss may differ by 1e-2 and top-1 by 5 points.
    Evaluation is exact: the 2-process record's metrics (torchmetrics synced over two uneven test
    shards) equal a single-process evaluation of the model it saved.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    # with metrics.csv (written once) and energy counting (on each rank's shard; rank 0's is recorded)
    csv_logger = [o for o in TINY if o not in ("logger=none", "energy.enabled=false")] + ["logger=csv"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "step.train", *csv_logger, "name=ddp2"]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("status ") == 1  # only rank 0 prints the summary

    single = run(compose([*TINY, "name=ddp1"]))
    board = pd.read_csv(isolated_roots / "results" / "leaderboard.csv")
    rows = board[board["experiment"] == "ddp2"]
    assert len(rows) == 1 and rows["status"].iloc[0] == "ok" and rows["device"].iloc[0] == "cpu x2"
    runs = list((isolated_roots / "outputs" / "runs").glob("*/*ddp2*"))
    assert len(runs) == 1  # other ranks made no Hydra folder
    record = json.loads(record_file(rows["record_path"].iloc[0]).read_text())
    assert record["world_size"] == 2 and record["history"][0]["epoch"] == 0
    written = list((isolated_roots / "outputs").rglob("metrics.csv"))
    assert written == [runs[0] / "metrics.csv"]  # rank 0 only
    assert pd.read_csv(written[0])["epoch"].tolist() == [0]  # one row per epoch, not one per rank
    assert record["data"]["n_test"] == 90 and record["energy"]["totals"]["n_samples"] == 45  # rank 0's half

    alone = evaluate_checkpoint(record["checkpoint"], energy=False)
    assert record["metrics"]["top1"] == pytest.approx(alone["test_top1"], abs=1e-9)
    assert record["test_loss"] == pytest.approx(alone["test_loss"], rel=1e-6)

    assert record["metrics"]["top1"] == pytest.approx(single["metrics"]["top1"], abs=5.0)
    assert record["test_loss"] == pytest.approx(single["test_loss"], abs=1e-2)


def _accuracy_worker(rank: int, init_file: str, out_file: str) -> None:
    import torch.distributed as dist
    from torchmetrics.classification import MulticlassAccuracy

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    preds = torch.tensor([[0, 1, 2, 0], [1, 1, 2, 2, 0, 0]][rank])  # rank 0: 3/4 right, rank 1: 2/6 right
    target = torch.tensor([[0, 1, 2, 1], [0, 0, 2, 1, 1, 0]][rank])
    metric = MulticlassAccuracy(num_classes=3, average="micro")
    metric.update(preds, target)
    value = float(metric.compute())
    if rank == 0:
        Path(out_file).write_text(str(value))
    dist.destroy_process_group()


def test_torchmetrics_accuracy_is_reduced_over_ranks_by_compute(tmp_path):
    """The runner relies on torchmetrics syncing states in compute(): (3 + 2) / (4 + 6) = 0.5."""
    import torch.multiprocessing as mp

    out = tmp_path / "acc.txt"
    mp.start_processes(_accuracy_worker, args=(str(tmp_path / "init"), str(out)), nprocs=2, start_method="spawn")
    assert float(out.read_text()) == pytest.approx(0.5)
