"""Proof that config values reach the modules: walk a model's spiking nodes and compare.

``check_nodes(model, expected, overrides)`` returns a list of human-readable mismatches (empty
when every node holds what the config says). ``expected`` comes from
:func:`expected_from_factory` (or ``NeuronFactory.expected()``); ``overrides`` maps a node's module path,
or its last component (``"attn_lif"``), to values a model sets on purpose, such as the attention
neuron's threshold. :func:`declared_overrides` collects those from the model itself: a module may
define ``neuron_overrides() -> {child_name: {attr: value}}``; otherwise the convention is that an
attribute ``<x>_threshold`` (a number) sets the threshold of its child node ``<x>_lif``. Backend-adapted nodes are also checked inside: the library node's own
tau, threshold, surrogate alpha and T must equal the configured ones.
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from step.registry import NEURONS, SURROGATES

#: attributes compared on every node (when present in ``expected``)
CHECKED = ("tau", "v_threshold", "v_reset", "decay_input", "detach_reset", "learnable_threshold", "T",
           "alpha", "max_spike")


def expected_from_factory(factory, **overrides: Any) -> dict[str, Any]:
    """The values every node built by ``factory(**overrides)`` must hold."""
    import inspect as _inspect

    from step.neurons.base import SpikingNeuron

    defaults = {k: p.default for k, p in _inspect.signature(SpikingNeuron.__init__).parameters.items()
                if k != "self"}
    params = {**defaults, **factory.params, **overrides, "T": factory.T}
    surrogate = params.pop("surrogate")
    alpha = params.pop("alpha")
    if alpha is None:
        alpha = SURROGATES.get(surrogate).default_alpha
    out = {"neuron": factory.name, "backend": factory.backend, "surrogate": surrogate, "alpha": float(alpha)}
    for key in CHECKED:
        if key in params:
            out[key] = params[key]
    if "max_spike" in factory.params:
        out["max_spike"] = factory.params["max_spike"]
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return a is not None and b is not None and math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-7)
        except (TypeError, ValueError):
            return False
    return a == b


def _node_problems(path: str, node: nn.Module, want: dict[str, Any]) -> list[str]:
    problems = []
    name, backend = want.get("neuron"), want.get("backend", "native")
    node_backend = getattr(node, "backend", "native")
    if node_backend != backend:
        problems.append(f"{path}: backend {node_backend!r}, expected {backend!r}")
    if name is not None:
        if node_backend == "native":
            cls = NEURONS.get(name)
            if type(node) is not cls:
                problems.append(f"{path}: class {type(node).__name__}, expected {cls.__name__} ({name!r})")
        elif getattr(node, "neuron", None) != name:
            problems.append(f"{path}: neuron {getattr(node, 'neuron', None)!r}, expected {name!r}")
    if "surrogate" in want:
        cls = SURROGATES.get(want["surrogate"])
        got = getattr(node, "surrogate", None)
        if type(got) is not cls:
            problems.append(f"{path}: surrogate {type(got).__name__}, expected {cls.__name__}")
    for key in CHECKED:
        if key not in want:
            continue
        if not hasattr(node, key):
            problems.append(f"{path}: has no attribute {key!r}")
        elif not _same(getattr(node, key), want[key]):
            problems.append(f"{path}: {key}={getattr(node, key)!r}, expected {want[key]!r}")
    library = getattr(node, "library_config", None)
    if callable(library):
        for key, value in library().items():
            if key in want and not _same(value, want[key]):
                problems.append(f"{path}: library node {key}={value!r}, expected {want[key]!r}")
    return problems


def declared_overrides(model: nn.Module) -> dict[str, dict[str, Any]]:
    """Per-node values the model's modules set on purpose, keyed by full module path."""
    from step.neurons.factory import spiking_nodes

    nodes = {path for path, _ in spiking_nodes(model)}
    out: dict[str, dict[str, Any]] = {}
    for path, module in model.named_modules():
        prefix = f"{path}." if path else ""
        hook = getattr(module, "neuron_overrides", None)
        if callable(hook):
            declared = hook()
        else:
            declared = {}
            for attr, value in vars(module).items():
                if attr.endswith("_threshold") and isinstance(value, (int, float)) and not isinstance(value, bool):
                    declared[attr[: -len("_threshold")] + "_lif"] = {"v_threshold": float(value)}
        for child, values in declared.items():
            if prefix + child in nodes:
                out[prefix + child] = dict(values)
    return out


def check_nodes(model: nn.Module, expected: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None,
                min_nodes: int = 1) -> list[str]:
    """Mismatches between every spiking node of ``model`` and ``expected`` (see module doc)."""
    from step.neurons.factory import spiking_nodes

    overrides = overrides or {}
    problems: list[str] = []
    seen = {key: 0 for key in overrides}
    count = 0
    for path, node in spiking_nodes(model):
        count += 1
        want = dict(expected)
        leaf = path.rsplit(".", 1)[-1]
        for key in (leaf, path):
            if key in overrides:
                want.update(overrides[key])
                seen[key] += 1
        problems.extend(_node_problems(path or "<root>", node, want))
    if count < min_nodes:
        problems.append(f"found {count} spiking nodes, expected at least {min_nodes}")
    problems.extend(f"no node named {key!r} found for its override" for key, n in seen.items() if n == 0)
    return problems
