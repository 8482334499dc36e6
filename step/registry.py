"""One registry type for every kind of component.

Modelled on timm's model registry: registration is a decorator that stays out of the way, names
read as specifications (``spikformer-4-384``) and ``build`` is the single way in, for the CLI and a
notebook alike. Unknown names and unknown keyword arguments fail with the valid choices and the
closest match, so a typo can never fall back to a silent default.

Registration happens when :mod:`step` is imported (each component module registers itself), not
by scanning files.
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from step.errors import ConfigError, UnknownNameError

__all__ = [
    "Registry",
    "Entry",
    "MODELS",
    "NEURONS",
    "SURROGATES",
    "ENCODERS",
    "ATTENTIONS",
    "DATASETS",
    "TASKS",
    "BACKENDS",
    "ENERGY_MODELS",
    "ALL_REGISTRIES",
    "closest",
]


def closest(name: str, choices: list[str]) -> str | None:
    """The choice that reads most like ``name``, or None if nothing is close."""
    match = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return match[0] if match else None


def _did_you_mean(name: str, choices: list[str]) -> str:
    guess = closest(name, choices)
    return f" Did you mean '{guess}'?" if guess else ""


@dataclass
class Entry:
    """One registered component: the callable that builds it and what users should know of it."""

    name: str
    fn: Callable[..., Any]
    defaults: dict[str, Any] = field(default_factory=dict)
    paper: str = ""
    description: str = ""

    def accepted_keywords(self) -> set[str] | None:
        """Keyword names ``fn`` takes, or None when it takes ``**kwargs`` (anything goes)."""
        target = self.fn.__init__ if inspect.isclass(self.fn) else self.fn
        params = inspect.signature(target).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return {
            p.name
            for p in params
            if p.name != "self"
            and p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        }


#: the packages whose import registers the built-in components (imported on the first lookup)
BUILTIN_PACKAGES = ("surrogates", "neurons", "encoders", "layers", "data", "attention", "models", "tasks", "energy")
_BUILTINS = {"state": "not loaded"}


def load_builtins() -> None:
    """Import every built-in component package once (they import torch: seconds, so only when needed).

    ``import step`` stays light, so ``step-train --help`` and config composition do not wait for torch;
    the first lookup in any registry (a name, a build, a listing) registers everything.
    """
    if _BUILTINS["state"] != "not loaded":
        return  # loaded, or loading (a lookup made while the packages import sees what is there so far)
    _BUILTINS["state"] = "loading"
    import importlib

    try:
        for package in BUILTIN_PACKAGES:
            importlib.import_module(f"step.{package}")
    except BaseException:
        _BUILTINS["state"] = "not loaded"
        raise
    _BUILTINS["state"] = "loaded"


class Registry:
    """Name -> builder map for one kind of component (``kind`` is used in messages).

    Built-in components register themselves when their packages are imported; every lookup first
    makes sure that has happened (:func:`load_builtins`), so a registry is never seen half empty.
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Entry] = {}

    # -- registration -------------------------------------------------------------------------
    def register(
        self,
        name: str | None = None,
        *,
        paper: str = "",
        description: str = "",
        **defaults: Any,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator registering a class or function under ``name``.

        ``defaults`` are keyword arguments the entry fixes unless the caller overrides them; this
        is how named variants (``spikformer-4-384``) share one builder.
        """

        def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.add(name or fn.__name__, fn, paper=paper, description=description, **defaults)
            return fn

        return decorator

    def add(
        self, name: str, fn: Callable[..., Any], *, paper: str = "", description: str = "", **defaults: Any
    ) -> None:
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        doc = description or (inspect.getdoc(fn) or "").split("\n\n")[0].replace("\n", " ")
        entry = Entry(name=name, fn=fn, defaults=dict(defaults), paper=paper, description=doc)
        accepted = entry.accepted_keywords()
        if accepted is not None:
            unknown = sorted(set(defaults) - accepted)
            if unknown:
                raise ValueError(f"{self.kind} '{name}': defaults {unknown} are not arguments of {fn}")
        self._entries[name] = entry

    # -- lookup -------------------------------------------------------------------------------
    def names(self) -> list[str]:
        load_builtins()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        load_builtins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        load_builtins()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {len(self)} entries)"

    def entry(self, name: str) -> Entry:
        load_builtins()
        try:
            return self._entries[name]
        except KeyError:
            valid = self.names()
            raise UnknownNameError(
                f"Unknown {self.kind} '{name}'.{_did_you_mean(name, valid)} "
                f"Valid {self.kind} names: {', '.join(valid) or '(none registered)'}."
            ) from None

    def get(self, name: str) -> Callable[..., Any]:
        return self.entry(name).fn

    def check_kwargs(self, name: str, kwargs: dict[str, Any]) -> None:
        """Raise :class:`ConfigError` if ``kwargs`` holds a key the builder does not take."""
        entry = self.entry(name)
        accepted = entry.accepted_keywords()
        if accepted is None:
            return
        unknown = sorted(set(kwargs) - accepted)
        if unknown:
            valid = sorted(accepted)
            hints = "".join(_did_you_mean(k, valid) for k in unknown)
            raise ConfigError(
                f"{self.kind} '{name}' has no option {', '.join(repr(k) for k in unknown)}.{hints} "
                f"Valid options: {', '.join(valid)}."
            )

    def build(self, name: str, **kwargs: Any) -> Any:
        """Build ``name`` with the entry's defaults overridden by ``kwargs``."""
        entry = self.entry(name)
        merged = {**entry.defaults, **kwargs}
        self.check_kwargs(name, merged)
        return entry.fn(**merged)


MODELS = Registry("model")
NEURONS = Registry("neuron")
SURROGATES = Registry("surrogate")
ENCODERS = Registry("encoder")
ATTENTIONS = Registry("attention")
DATASETS = Registry("dataset")
TASKS = Registry("task")
BACKENDS = Registry("backend")
ENERGY_MODELS = Registry("energy model")

ALL_REGISTRIES: dict[str, Registry] = {
    "model": MODELS,
    "neuron": NEURONS,
    "surrogate": SURROGATES,
    "encoder": ENCODERS,
    "attention": ATTENTIONS,
    "dataset": DATASETS,
    "task": TASKS,
    "backend": BACKENDS,
    "energy": ENERGY_MODELS,
}
