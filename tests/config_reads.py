"""Which leaves of a composed config a run really reads (used by tests/test_config_consumed.py).

Two ways a value leaves the config, both watched while :func:`track_reads` is active:

* **Direct reads** by the engine: ``cfg.trainer.epochs``, ``cfg.get("x")``, ``cfg["x"]`` (every call
  of OmegaConf's ``DictConfig._get_impl`` that returns a leaf value).
* **Hand-overs** to a builder: ``OmegaConf.to_container(node)`` of any node below the root (how
  :func:`step.config.validate.group_params` and the energy measurement pass a group's keywords on).
  Each leaf of such a container is replaced by a *tracer*: a ``float``/``int``/``str``/``list``
  subclass that behaves exactly like the value and records the first time code does anything with
  it (compares, hashes, converts, computes, formats, iterates, calls a method). A value that is only
  passed along and stored (the mixup bug: alphas copied into a field nobody reads) is never marked.
  ``bool`` and ``None`` cannot be subclassed; those leaves count as read when handed over, and
  ``int`` leaves also when a ``step`` module hands them to ``range`` (consumed in C otherwise), and
  every value that names a cache (``step.data.paths.params_key``: a cached dataset built from them).

``OmegaConf.to_container`` of the root (the run record's copy of the config) marks nothing: writing a
value into the record is not applying it. Nor do reads while the config is validated
(``validate_config``) or while the record's component summary is written (``components``): a value
that is only checked or only reported has not acted. A leaf whose value interpolates others
(``leaderboard: ${paths.output_root}/...``) passes its reads on to them (:func:`unread`).
"""

from __future__ import annotations

import builtins
import contextlib
import re
import sys
from typing import Any, Iterator

from omegaconf import DictConfig, ListConfig, OmegaConf

_REAL_RANGE = builtins.range


class Reads:
    """The dotted keys read so far (lists are one leaf: ``model.dims``)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def mark(self, key: str) -> None:
        self.keys.add(key)


_active: list[Reads] = []


_paused: list[bool] = []


def _mark(key: str) -> None:
    if _active and not _paused:
        _active[-1].mark(key)


def _unmarked(fn):
    """``fn`` with reads switched off while it runs."""

    def wrapper(*args, **kwargs):
        _paused.append(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _paused.pop()

    return wrapper


def _tracer_type(base: type) -> type:
    """A subclass of ``base`` whose every operation marks its key as read, then acts as ``base``."""

    def wrap(name: str):
        original = getattr(base, name)

        def method(self, *args, **kwargs):
            _mark(object.__getattribute__(self, "_step_key"))
            for other in args:  # the other operand of a binary operation is used too
                if isinstance(other, _TRACED_TYPES):
                    _mark(object.__getattribute__(other, "_step_key"))
            return original(self, *args, **kwargs)

        method.__name__ = name
        return method

    names = [n for n in dir(base) if n.startswith("__") and n not in {
        "__new__", "__init__", "__getattribute__", "__setattr__", "__delattr__", "__class__",
        "__init_subclass__", "__subclasshook__", "__reduce__", "__reduce_ex__", "__getnewargs__",
        "__doc__", "__dir__", "__sizeof__", "__getstate__", "__class_getitem__",
    } and callable(getattr(base, n))]
    namespace: dict[str, Any] = {n: wrap(n) for n in names}

    def getattribute(self, name):
        if not name.startswith("_"):  # a public method: .startswith(), .lower(), .is_integer(), ...
            _mark(object.__getattribute__(self, "_step_key"))
        return object.__getattribute__(self, name)

    def reduce(self):  # pickled / deep-copied as the plain value
        return (base, (base(self),))

    namespace.update(__getattribute__=getattribute, __reduce__=reduce,
                     __reduce_ex__=lambda self, protocol: reduce(self))
    return type(f"Traced{base.__name__.title()}", (base,), namespace)


_TRACED_TYPES: tuple = ()
TRACERS = {float: _tracer_type(float), int: _tracer_type(int), str: _tracer_type(str)}
TracedList = _tracer_type(list)
_TRACED_TYPES = (*TRACERS.values(), TracedList)


def _mark_all(value: Any) -> None:
    """Mark every traced value inside ``value`` (a dict, list or single value)."""
    if isinstance(value, _TRACED_TYPES):
        _mark(object.__getattribute__(value, "_step_key"))
    if isinstance(value, dict):
        for v in value.values():
            _mark_all(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _mark_all(v)


def _keyed(fn):
    """``fn(params, ...)`` that names a cache after ``params``: those values select what is loaded."""

    def wrapper(params, *args, **kwargs):
        _mark_all(params)
        return fn(params, *args, **kwargs)

    wrapper._step_original = fn
    return wrapper


def _traced(value: Any, key: str) -> Any:
    kind = type(value)
    if kind in TRACERS:
        out = TRACERS[kind](value)
        out._step_key = key
        return out
    if kind is list:
        out = TracedList(value)  # one leaf for the whole list
        out._step_key = key
        return out
    if kind is dict:
        return {k: _traced(v, f"{key}.{k}") for k, v in value.items()}
    _mark(key)  # bool / None: cannot be traced; handing it over counts
    return value


def _counting_range(*args):
    for a in args:
        key = getattr(a, "_step_key", None)
        if key is not None:
            _mark(key)
    return _REAL_RANGE(*(int(a) if type(a) is not int and isinstance(a, int) else a for a in args))


def _patch_range() -> list:
    """``range`` of every imported ``step`` module counts the traced ints it is given."""
    import importlib

    for name in ("step.data.mixup", "step.engine.recipe", "step.engine.run", "step.engine.schedule",
                 "step.engine.teacher", "step.tasks.criterion"):
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:  # older checkouts
            pass
    from step.registry import load_builtins

    load_builtins()  # every component module, so each gets the counting range

    from step.data.paths import params_key

    patched = []
    for name, module in list(sys.modules.items()):
        if not (name == "step" or name.startswith("step.")) or module is None:
            continue
        if "range" not in vars(module):
            module.range = _counting_range
            patched.append((module, "range", None))
        if vars(module).get("params_key") is params_key:
            module.params_key = _keyed(params_key)
            patched.append((module, "params_key", params_key))
    return patched


@contextlib.contextmanager
def track_reads() -> Iterator[Reads]:
    """Record reads of any config while active (see the module docstring)."""
    reads = Reads()
    real_get_impl = DictConfig._get_impl
    real_to_container = OmegaConf.to_container

    def get_impl(self, key, default_value, validate_key=True):
        value = real_get_impl(self, key, default_value, validate_key)
        if _active and not _paused and not isinstance(value, (DictConfig, ListConfig)):
            full = self._get_full_key(key)
            if full:
                _mark(str(full))
        return value

    def to_container(cfg, *args, **kwargs):
        out = real_to_container(cfg, *args, **kwargs)
        if not _active or _paused or not isinstance(cfg, DictConfig) or cfg._get_parent() is None:
            return out
        prefix = cfg._get_full_key(None)
        return {k: _traced(v, f"{prefix}.{k}") for k, v in out.items()}

    import step.engine.run  # noqa: F401

    runner = sys.modules["step.engine.run"]  # the module (step.engine.run is also the function's name)

    _active.append(reads)
    DictConfig._get_impl = get_impl
    OmegaConf.to_container = staticmethod(to_container)
    patched = _patch_range()
    silenced = {name: getattr(runner, name) for name in ("validate_config", "components")}
    for name, fn in silenced.items():
        setattr(runner, name, _unmarked(fn))
    try:
        yield reads
    finally:
        for name, fn in silenced.items():
            setattr(runner, name, fn)
        for module, name, original in patched:
            if original is None:
                delattr(module, name)
            else:
                setattr(module, name, original)
        OmegaConf.to_container = staticmethod(real_to_container)
        DictConfig._get_impl = real_get_impl
        _active.pop()


def leaves(cfg: DictConfig) -> dict[str, Any]:
    """Every leaf of ``cfg`` as ``{dotted key: value}``; a list of plain values is one leaf."""
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            if not node and prefix:
                out[prefix] = node
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif isinstance(node, list) and any(isinstance(v, (dict, list)) for v in node):
            for i, v in enumerate(node):
                walk(v, f"{prefix}[{i}]")
        else:
            out[prefix] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][\w.]*)\}")


def unread(cfg: DictConfig, reads: Reads, ignore: tuple[str, ...] = ()) -> list[str]:
    """The leaves of ``cfg`` never read, reads passed through interpolations, ``ignore`` prefixes left out."""
    raw = leaves(cfg)
    read = set(reads.keys)
    changed = True
    while changed:
        changed = False
        for key, value in raw.items():
            if key in read and isinstance(value, str):
                for ref in _INTERPOLATION.findall(value):
                    if ref in raw and ref not in read:
                        read.add(ref)
                        changed = True
    return sorted(k for k in raw if k not in read
                  and not any(k == p or k.startswith(p + ".") or k.startswith(p + "[") for p in ignore))
