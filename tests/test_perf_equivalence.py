"""Fast code paths compute what the reference path computes, and the benchmark plumbing judges
ratios correctly (issue 10). No timings are asserted here."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch

import step  # noqa: F401
from step.components import default_neuron_factory
from step.neurons.factory import NeuronFactory
from step.registry import MODELS

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))
import _timing  # noqa: E402
import run_all  # noqa: E402


def _tiny_spikformer(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return MODELS.build("spikformer", num_classes=3, img_size=8, in_chans=2, depth=1, dim=16, heads=2,
                        patch_size=2, neuron=default_neuron_factory(T=2))


def test_inference_mode_path_equals_training_path_bit_for_bit():
    # The fused neuron skips saving membranes when no gradient is needed (the fast evaluation
    # path); logits must equal those of the gradient-recording path exactly, in eval mode.
    model = _tiny_spikformer().eval()
    x = torch.rand(2, 3, 2, 8, 8, generator=torch.Generator().manual_seed(1)) * 2
    with torch.inference_mode():
        fast = model(x)
    slow = model(x.clone().requires_grad_(True))
    assert torch.equal(fast, slow.detach())


def test_generic_neuron_loop_matches_fused_path_in_a_model():
    # Same weights, neurons switched to the generic autograd loop (learnable_threshold=True takes
    # SpikingNeuron.run): logits equal and parameter gradients agree to float rounding.
    fused = _tiny_spikformer(seed=3).train()
    torch.manual_seed(3)
    generic = MODELS.build("spikformer", num_classes=3, img_size=8, in_chans=2, depth=1, dim=16, heads=2,
                           patch_size=2, neuron=NeuronFactory(
                               "lif", T=2, tau=2.0, v_threshold=1.0, v_reset=0.0, decay_input=True,
                               detach_reset=True, learnable_threshold=True, surrogate="atan", alpha=2.0))
    missing = generic.load_state_dict(fused.state_dict(), strict=False)
    assert all(k.endswith("threshold") for k in missing.missing_keys) and not missing.unexpected_keys
    x = torch.rand(2, 4, 2, 8, 8, generator=torch.Generator().manual_seed(2)) * 2
    out_f, out_g = fused(x), generic(x)
    assert torch.equal(out_f, out_g)
    out_f.square().sum().backward()
    out_g.square().sum().backward()
    gen = dict(generic.named_parameters())
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, gen[name].grad, rtol=1e-5, atol=1e-6)


def test_benchmark_peers_have_the_parameter_count_they_claim():
    pytest.importorskip("spikingjelly")
    import bench_train_step as bts

    ours, (peer, size) = bts.build_ours("spikformer-4-384", 4), bts.build_peer("spikformer-4-384", 4)
    # Spikformer-4-384 on CIFAR-10 has 9.32M parameters (reference/models.md); the peer is within 0.5%
    assert abs(bts.n_params(ours) - 9.32e6) < 0.01e6
    assert abs(bts.n_params(peer) - bts.n_params(ours)) / bts.n_params(ours) < 0.005
    assert size == 32


def test_status_flags_a_ratio_below_its_goal():
    assert _timing.status(1.49, 1.5) == "REGRESSION"
    assert _timing.status(1.5, 1.5) == "ok"
    assert _timing.status(0.7, None) == "info"
    row = _timing.time_ratio("x", "s", ours_s=2.0, peer_s=3.0, goal=1.5)
    assert row.ratio == pytest.approx(1.5) and row.status == "ok"
    assert run_all.regressions([row]) == []
    slow = _timing.time_ratio("y", "s", ours_s=3.0, peer_s=3.0, goal=1.5)
    assert run_all.regressions([slow]) == ["REGRESSION: y: ratio 1.000 below its goal 1.5"]


def test_alternate_runs_round_robin_after_warmup():
    calls = []
    med = _timing.alternate({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=3, warmup=1)
    assert calls == ["a", "b"] * 4
    assert set(med) == {"a", "b"} and all(v >= 0 for v in med.values())


def test_append_csv_writes_the_header_once(tmp_path):
    path = tmp_path / "bench.csv"
    _timing.append_csv([_timing.Row("b1", "T=4", 1.0, 2.0, 2.0, 1.5)], path)
    _timing.append_csv([_timing.Row("b2", "T=4", 2.0, 1.0, 0.5, 1.5)], path)
    rows = list(csv.reader(path.open()))
    assert rows[0] == _timing.COLUMNS
    assert [r[3] for r in rows[1:]] == ["b1", "b2"]
    assert [r[-1] for r in rows[1:]] == ["ok", "REGRESSION"]
    assert rows[1][2] == str(torch.get_num_threads()) and rows[1][1] == torch.__version__


def test_parsers_read_the_neuron_and_energy_reports():
    neuron_report = (
        "LIF fwd+bwd [4, 32, 24576] float32, 2 threads, median of 7\n"
        "  spikingjelly-eager      30.00 ms\n"
        "  (native-eager runs the c kernel)\n"
        "  native-eager            20.00 ms   speed-up x1.50   bit-identical=True\n"
        "  native-torch            25.00 ms   speed-up x1.20   bit-identical=True\n"
        "  native-compiled          5.00 ms   speed-up x6.00   bit-identical=False\n"
    )
    rows = run_all.parse_neuron(neuron_report)
    assert [r.benchmark for r in rows] == ["neuron/lif-fwd-bwd/native-eager", "neuron/lif-fwd-bwd/native-torch",
                                           "neuron/lif-fwd-bwd/native-compiled"]
    # the goal is on the default path; the others are reported for comparison
    assert rows[0].goal == 3.0 and rows[1].goal is None and rows[2].goal is None
    assert rows[2].ratio == pytest.approx(6.0)
    assert run_all.regressions(rows) == [
        "REGRESSION: neuron/lif-fwd-bwd/native-eager: ratio 1.500 below its goal 3",
        "REGRESSION: neuron/lif-fwd-bwd/native-compiled: not bit-identical to SpikingJelly"]
    energy = run_all.parse_energy("device cpu: without counting 1.0000 s, with counting 1.3000 s, ratio 1.300x")
    assert energy[0].status == "REGRESSION"  # 1.3x overhead > 1.2x
    ok = run_all.parse_energy("device cpu: without counting 1.0000 s, with counting 1.1000 s, ratio 1.100x")
    assert ok[0].status == "ok"
