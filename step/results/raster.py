"""Spikes of one input: a raster (neuron x time step) per layer and each layer's firing rate per step.

``step-board --raster RUN`` (a run folder or its model.pt / last.pt): the model is rebuilt from the
checkpoint's own config (:func:`load_run`, reusing :func:`step.engine.evaluate.load_checkpoint` and
the runner's builders), one test sample of the run's dataset goes through it, and a forward hook on
every spiking neuron module records its output ``[T, B, ...]``. A layer's spikes are flattened to
``[neurons, T]`` (the neurons of sample 0); its per-step rate is the mean over those neurons.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from step.errors import CheckpointError
from step.results import style

#: checkpoint names looked for in a run folder, first found wins
CHECKPOINTS = ("model.pt", "last.pt")


@dataclass
class LoadedRun:
    """A model rebuilt from its checkpoint, with what feeds it."""

    path: Path
    cfg: Any
    model: nn.Module
    encoder: nn.Module
    bundle: Any


@dataclass
class Spikes:
    """Recorded spikes of one input: layer name -> ``[neurons, T]`` array (values as emitted)."""

    layers: dict[str, np.ndarray] = field(default_factory=dict)
    label: Any = None

    def rates(self) -> dict[str, np.ndarray]:
        """Layer -> firing rate per time step (mean over its neurons)."""
        return {name: s.mean(axis=0) for name, s in self.layers.items()}


def checkpoint_of(run: str | Path) -> Path:
    """The checkpoint of a run folder (model.pt, else last.pt), or the file itself."""
    run = Path(run)
    if run.is_dir():
        for name in CHECKPOINTS:
            if (run / name).is_file():
                return run / name
        raise CheckpointError(f"{run} holds no {' or '.join(CHECKPOINTS)}; give a run folder of a finished "
                              "run or the checkpoint file.")
    return run


def load_run(run: str | Path, device: str = "cpu") -> LoadedRun:
    """Rebuild the model of a run from its checkpoint's config and load its weights (eval mode)."""
    from step.engine.evaluate import rebuild

    path = checkpoint_of(run)
    cfg, bundle, model, encoder = rebuild(path, device=device)
    return LoadedRun(path, cfg, model.eval(), encoder, bundle)


def neuron_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of the spiking neurons, outermost only (a neuron's insides are not layers)."""
    from step.energy.meter import _is_neuron

    found: list[tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if any(name.startswith(prefix + ".") for prefix, _ in found):
            continue
        if _is_neuron(module):
            found.append((name, module))
    return found


@torch.no_grad()
def record_spikes(loaded: LoadedRun, sample: int = 0) -> Spikes:
    """Run test sample ``sample`` through the model and keep every neuron layer's output."""
    from step.engine.loop import to_time_major

    x, y = loaded.bundle.test[sample]
    x = torch.as_tensor(x).unsqueeze(0)
    device = next(loaded.model.parameters()).device
    spikes = Spikes(label=y if not torch.is_tensor(y) or y.numel() == 1 else None)
    handles = []

    def keep(name):
        def hook(_module, _inputs, out):
            out = out[0] if isinstance(out, tuple) else out
            steps = out.shape[0]
            spikes.layers[name] = out[:, 0].reshape(steps, -1).T.float().cpu().numpy()  # [neurons, T]
        return hook

    for name, module in neuron_modules(loaded.model):
        handles.append(module.register_forward_hook(keep(name)))
    try:
        loaded.model(to_time_major(x.to(device), loaded.bundle.modality, loaded.encoder))
    finally:
        for h in handles:
            h.remove()
    if not spikes.layers:
        raise CheckpointError(f"{loaded.path}: the model has no spiking neuron module to record (an ANN twin?).")
    return spikes


def pick_layers(names: list[str], count: int) -> list[str]:
    """``count`` layers spread from the first to the last (all when there are fewer)."""
    if len(names) <= count:
        return list(names)
    return [names[int(round(i))] for i in np.linspace(0, len(names) - 1, count)]


def raster_figure(spikes: Spikes, layers: int = 4, max_neurons: int = 256, title: str = ""):
    """Spike rasters of ``layers`` layers: neuron index x time step (at most ``max_neurons`` rows a
    layer, evenly spaced through it, so a row is never an average of neurons)."""
    names = pick_layers(list(spikes.layers), layers)
    with style.context() as plt:
        fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names) + 1, 4.2), squeeze=False)
        for ax, name in zip(axes.flat, names):
            full = spikes.layers[name]
            every = -(-full.shape[0] // max_neurons)  # evenly spaced neurons when the layer has more
            s = full[::every]
            ax.imshow(s, aspect="auto", interpolation="nearest", cmap="Greys", origin="lower",
                      vmin=0, vmax=max(1.0, float(s.max())), extent=(-0.5, s.shape[1] - 0.5, -0.5, s.shape[0] - 0.5))
            ax.set_xticks(range(s.shape[1]))
            ax.set_xlabel("time step")
            kept = f"{s.shape[0]} of {full.shape[0]}, 1 in {every}" if every > 1 else f"all {full.shape[0]}"
            ax.set_title(f"{name}\nneurons: {kept}", fontsize=7)
            ax.grid(False)
        axes.flat[0].set_ylabel("neuron index")
        fig.suptitle(title or "spike raster of one input (black = spike)")
    return fig


def rate_figure(spikes: Spikes, title: str = ""):
    """Each neuron layer's firing rate at each time step (one line per layer, coloured by depth)."""
    rates = spikes.rates()
    with style.context() as plt:
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        cmap = plt.get_cmap("viridis")
        for i, (name, r) in enumerate(rates.items()):
            ax.plot(np.arange(len(r)), r, marker="o", ms=3, lw=1, color=cmap(i / max(1, len(rates) - 1)), label=name)
        steps = max(len(r) for r in rates.values())
        ax.set_xticks(range(steps))
        ax.set_xlabel("time step")
        ax.set_ylabel("firing rate (spikes per neuron)")
        ax.set_ylim(bottom=0)
        fig.legend(fontsize=6, ncols=1 if len(rates) <= 20 else 2, loc="outside right upper", frameon=False)
        ax.set_title(title or "firing rate per time step, one input (colour: depth)")
    return fig


def write_raster(run: str | Path, out: str | Path, sample: int = 0, layers: int = 4) -> list[Path]:
    """Both figures of one run into ``out`` (PNG, SVG, PDF); the PNGs' paths."""
    loaded = load_run(run)
    if not 0 <= sample < len(loaded.bundle.test):
        raise CheckpointError(f"--sample {sample} is outside the test split (0..{len(loaded.bundle.test) - 1}).")
    spikes = record_spikes(loaded, sample)
    c = loaded.cfg
    what = f"{c.model.name} / {c.attention.name} / {c.neuron.name}, T={c.T}, {c.dataset.name} test sample {sample}"
    out = Path(out)
    return [style.save(raster_figure(spikes, layers, title=f"spike raster: {what}"), out / "spike_raster"),
            style.save(rate_figure(spikes, title=f"firing rate per step: {what}"), out / "firing_rate_per_step")]
