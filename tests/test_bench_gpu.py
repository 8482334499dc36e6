"""tests/benchmarks/bench_gpu.py (``make bench-gpu``): its bandwidth arithmetic, its exit without CUDA,
and a dry run of every path on the CPU (slow)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import bench_gpu  # noqa: E402


@pytest.mark.parametrize("name,tbs", [("NVIDIA H200", 4.8), ("NVIDIA GH200 480GB", 4.0), ("NVIDIA H100 80GB HBM3", 3.35),
                                      ("NVIDIA H100 PCIe", 2.0), ("NVIDIA A100-SXM4-80GB", 2.039),
                                      ("NVIDIA A100-SXM4-40GB", 1.555), ("NVIDIA A10", 0.6), ("NVIDIA L4", 0.3),
                                      ("NVIDIA L40S", 0.864), ("Tesla T4", 0.32), ("NVIDIA B200", 8.0),
                                      ("Some Future GPU", None)])
def test_peak_bandwidth_of_known_gpus(name, tbs):
    assert bench_gpu.peak_bandwidth(name) == tbs


def test_bytes_a_fused_neuron_must_move():
    # forward: X read, S written; backward: X read again, g_S read, g_X written -> 5 passes of T x N
    assert bench_gpu.neuron_bytes((4, 256, 384, 64), 4) == 5 * 4 * 256 * 384 * 64 * 4 == 503_316_480
    assert bench_gpu.neuron_bytes((4, 256, 384, 64), 2) == 251_658_240


def test_without_cuda_it_says_so_and_exits_cleanly(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert bench_gpu.main(["--csv", str(tmp_path / "bench.csv")]) == 0
    assert "no CUDA device here" in capsys.readouterr().out
    assert not (tmp_path / "bench.csv").exists()


@pytest.mark.slow
def test_dry_run_of_every_path_on_the_cpu(tmp_path, capsys):
    out = tmp_path / "bench.csv"
    status = bench_gpu.main(["--device", "cpu", "--quick", "--budget", "900", "--csv", str(out)])
    rows = list(csv.DictReader(out.open()))
    names = {r["benchmark"] for r in rows}
    assert status == 0  # goals apply on a GPU only
    assert {"gpu/neuron/lif-fwd-bwd/ours-vs-spikingjelly", "gpu/neuron/bandwidth/ours", "gpu/train/spikformer-4-384",
            "gpu/inference/sdt-2-512", "gpu/train/qkformer-4-384", "gpu/train-peak-memory/sdt-2-512"} - names == \
        {"gpu/train-peak-memory/sdt-2-512"}  # peak memory is a CUDA measurement
    assert {"gpu/train/meta-spikeformer-15m", "gpu/inference/meta-spikeformer-15m"} <= names
    assert all(float(r["ours"]) > 0 for r in rows)
