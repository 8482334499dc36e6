"""Run the NeuroBench package (optional extra ``neurobench``) and our counters on the same model and data.

    python -m step.energy.neurobench_check <checkpoint.pt> [--samples 360] [--batch-size 32]

prints our ``neurobench`` block beside the package's numbers for a STEP checkpoint (evaluated on
the test split of the config it was trained with). :func:`compare` is what the parity tests call.
NeuroBench is imported only here: nothing else in STEP needs it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import torch
from torch import nn

from step.errors import StepError

#: our key -> (NeuroBench result, key inside it)
PAIRS = {
    "effective_acs": ("SynapticOperations", "Effective_ACs"),
    "effective_macs": ("SynapticOperations", "Effective_MACs"),
    "dense": ("SynapticOperations", "Dense"),
    "activation_sparsity": ("ActivationSparsity", None),
    "connection_sparsity": ("ConnectionSparsity", None),
    "footprint_bytes": ("Footprint", None),
    "parameter_count": ("ParameterCount", None),
    "membrane_updates": ("MembraneUpdates", None),
}


def _neurobench():
    try:
        from neurobench.benchmarks import Benchmark
        from neurobench.metrics.static import ConnectionSparsity, Footprint, ParameterCount
        from neurobench.metrics.workload import ActivationSparsity, MembraneUpdates, SynapticOperations
        from neurobench.models.neurobench_model import NeuroBenchModel
    except ImportError as err:
        raise StepError(f"NeuroBench is not importable ({err}); install the extra: pip install 'step-bench[neurobench]' "
                        "(or pip install --no-deps neurobench==2.3.0 snntorch==1.0.0).") from None
    return Benchmark, NeuroBenchModel, [[Footprint, ConnectionSparsity, ParameterCount],
                                        [SynapticOperations, ActivationSparsity, MembraneUpdates]]


def package_numbers(net: nn.Module, encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor,
                    batch_size: int) -> dict[str, Any]:
    """NeuroBench's static and workload metrics of ``net`` fed ``encoder(images)`` (our neurons are
    registered as its activation layers)."""
    from torch.utils.data import DataLoader, TensorDataset

    from step.neurons.base import SpikingNeuron

    Benchmark, NeuroBenchModel, metrics = _neurobench()

    class StepModel(NeuroBenchModel):
        def __init__(self):
            super().__init__()
            self.add_activation_module(SpikingNeuron)

        def __call__(self, batch):
            with torch.no_grad():
                return net(encoder(batch))

        def __net__(self):
            return net

    net.eval()
    loader = DataLoader(TensorDataset(images, labels), batch_size=batch_size)
    return Benchmark(StepModel(), loader, [], [], metrics).run(quiet=True)


def our_numbers(net: nn.Module, encoder: nn.Module, images: torch.Tensor, T: int, batch_size: int) -> dict[str, Any]:
    """Our ``neurobench`` block for the same evaluation."""
    from step.energy.meter import EnergyMeter

    meter = EnergyMeter(net.eval(), T=T)
    with meter, torch.inference_mode():
        for batch in images.split(batch_size):
            net(encoder(batch))
    return meter.report().to_record()["by_convention"]["neurobench"]


def compare(net: nn.Module, encoder: nn.Module, images: torch.Tensor, labels: torch.Tensor, T: int,
            batch_size: int = 32) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ours, the package's) on the same model and images."""
    return (our_numbers(net, encoder, images, T, batch_size),
            package_numbers(net, encoder, images, labels, batch_size))


def theirs(result: dict[str, Any], key: str) -> Any:
    name, inner = PAIRS[key]
    value = result[name]
    return value[inner] if inner else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m step.energy.neurobench_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--samples", type=int, default=360, help="test images (default 360)")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    try:
        from omegaconf import OmegaConf

        import step  # noqa: F401
        from step.engine import builders
        from step.engine.evaluate import load_checkpoint

        ckpt = load_checkpoint(args.checkpoint)
        cfg = OmegaConf.create(ckpt["config"])
        bundle = builders.build_data(cfg)
        model = builders.build_model(cfg, bundle)
        model.load_state_dict(ckpt["model"])
        n = min(args.samples, len(bundle.test))
        images = torch.stack([bundle.test[i][0] for i in range(n)])
        labels = torch.tensor([int(bundle.test[i][1]) for i in range(n)])
        ours, package = compare(model, builders.build_encoder(cfg), images, labels, int(cfg.T), args.batch_size)
    except StepError as err:
        print(f"neurobench_check: {err}", file=sys.stderr)
        return err.exit_code
    print(f"{'quantity':<22} {'STEP neurobench block':>22} {'NeuroBench 2.3.0':>22}")
    for key in PAIRS:
        print(f"{key:<22} {ours[key]:>22.10g} {theirs(package, key):>22.10g}")
    print(f"not seen by NeuroBench: {', '.join(ours['not_seen']) or '-'}")
    for key, why in ours["differs_by_design"].items():
        print(f"differs by design - {key}: {why}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
