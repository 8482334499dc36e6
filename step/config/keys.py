"""Misspelled keys on the command line: one message with the closest key, before Hydra runs.

Hydra refuses ``trainer.epoch=1`` with a generic "Key 'epoch' not in 'TrainerConf'" and a hint about
``HYDRA_FULL_ERROR``. :func:`check_override_keys` composes the config the command line selects (each
choice of a swept group in turn) and, for every ``a.b.c=value`` override whose key is in none of
them, raises one :class:`~step.errors.ConfigError` naming the closest key of that config node (or,
failing that, the closest ``group.key`` anywhere: ``dataset.batchsize`` -> ``trainer.batch_size``).
``+key=value`` (add) and ``~key`` (delete) are left to Hydra, as are ``hydra.*`` keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import OmegaConf

from step.errors import ConfigError
from step.registry import closest

#: sweep syntax whose choices we cannot list without Hydra's sweeper: such a command is left to Hydra
_SWEEP_FUNCTIONS = ("range(", "choice(", "interval(", "glob(", "shuffle(", "sort(", "tag(")


def _plain_overrides(argv: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg[0] in "+~":
            continue
        key, value = arg.split("=", 1)
        if key.startswith("hydra") or "/" in key or "@" in key:
            continue
        out.append((key, value))
    return out


def _compositions(choices: dict[str, str]) -> list[list[str]]:
    """Override lists that cover every choice of every swept group (the others at their first choice)."""
    def options(value: str) -> list[str]:
        if value.startswith("[") or "," not in value:  # one choice, or a list of configs (logger=[csv,wandb])
            return [value]
        return value.split(",")

    first = {g: options(v)[0] for g, v in choices.items()}
    out = [[f"{g}={v}" for g, v in first.items()]]
    for group, value in choices.items():
        for other in options(value)[1:]:
            out.append([f"{g}={other if g == group else v}" for g, v in first.items()])
    return out


def _missing(tree: dict[str, Any], key: str) -> tuple[str, list[str]] | None:
    """(the deepest existing node, its keys) when ``key`` is not in ``tree``; None when it is, or when a
    list or a value stands in the way (Hydra judges those)."""
    node: Any = tree
    parts = key.split(".")
    for i, part in enumerate(parts):
        if not isinstance(node, dict):
            return None
        if part not in node:
            return ".".join(parts[:i]), sorted(map(str, node))
        node = node[part]
    return None


def _leaves(tree: dict[str, Any]) -> list[str]:
    """``group.key`` for every key of every group node (the keys one sets most)."""
    return [f"{g}.{k}" for g, node in tree.items() if isinstance(node, dict) for k in node]


def suggest_dotted(name: str, tree: dict[str, Any]) -> str | None:
    """The ``group.key`` whose key reads most like ``name`` (``epoch`` -> ``trainer.epochs``)."""
    leaves = _leaves(tree)
    guess = closest(name, [leaf.split(".", 1)[1] for leaf in leaves])
    if guess is None:
        return None
    return next(leaf for leaf in leaves if leaf.split(".", 1)[1] == guess)


def composed_trees(group_choices: dict[str, str]) -> list[dict[str, Any]]:
    """The unresolved config trees the command line's group choices compose (one per swept choice)."""
    from step.config import compose

    trees = []
    for overrides in _compositions(group_choices):
        cfg = compose(overrides)
        trees.append(OmegaConf.to_container(cfg, resolve=False))
    return trees


def check_override_keys(argv: Sequence[str], groups: Sequence[str]) -> None:
    """Raise one :class:`ConfigError` for the first ``key=value`` whose key no selected config holds."""
    pairs = _plain_overrides(argv)
    dotted = [key for key, _ in pairs if "." in key]
    if not dotted:
        return
    choices = {key: value for key, value in pairs if key in groups}
    if any(v.startswith(_SWEEP_FUNCTIONS) for v in choices.values()):
        return
    try:
        trees = composed_trees(choices)
    except Exception:  # noqa: BLE001 - a composition problem of its own: Hydra reports it
        return
    for key in dotted:
        missing = [_missing(tree, key) for tree in trees]
        if not all(missing):
            continue
        parent = missing[0][0]
        keys = sorted({k for p, ks in missing if p == parent for k in ks})  # over every swept choice
        name = key.split(".")[len(parent.split(".")) if parent else 0]
        guess = closest(name, keys)
        guess = f"{parent}.{guess}" if guess and parent else guess
        if guess is None:
            guess = suggest_dotted(name, trees[0])
        hint = f" Did you mean '{guess}'?" if guess else ""
        where = f"config '{parent}'" if parent else "the config"
        raise ConfigError(f"'{key}' is not a key of {where}.{hint} Keys of {parent or 'the config'}: "
                          f"{', '.join(keys)}. To add a new key, write +{key}=VALUE.")
