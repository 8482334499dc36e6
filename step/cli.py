"""Console scripts: ``step-train`` (Hydra main), ``step-eval`` and ``step-list``.

Every user error ends in one paragraph on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from step.errors import StepError

ROOT_KEYS = {"T", "seed", "name", "tags", "reference"}


def _fail(message: str, code: int = 2) -> None:
    print(f"step: error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _group_options(group: str) -> list[str]:
    from step.config.paths import conf_dir, experiments_dir

    found = set()
    for base in (conf_dir(), experiments_dir()):
        folder = base / group
        if folder.is_dir():
            found.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(found)


def _groups() -> list[str]:
    from step.config.paths import conf_dir, experiments_dir

    groups = set()
    for base in (conf_dir(), experiments_dir()):
        if base.is_dir():
            groups.update(p.name for p in base.iterdir() if p.is_dir())
    return sorted(groups)


def check_overrides(argv: list[str]) -> None:
    """Catch misspelled groups and options before Hydra, with the valid choices and a suggestion."""
    from step.registry import closest

    groups = _groups()
    for arg in argv:
        if arg.startswith("-") or "=" not in arg or arg[0] in "+~":
            continue
        key, value = arg.split("=", 1)
        if "." in key or key in ROOT_KEYS or key.startswith("hydra"):
            continue
        if key not in groups:
            guess = closest(key, groups + sorted(ROOT_KEYS))
            hint = f" Did you mean '{guess}'?" if guess else ""
            _fail(f"'{key}' is not a config group or setting.{hint} Groups: {', '.join(groups)}; "
                  f"settings: {', '.join(sorted(ROOT_KEYS))}. Set a single value with group.key=value.")
        options = _group_options(key)
        for choice in value.split(","):
            if choice in ("null",) or choice.startswith(("range(", "choice(", "glob(")):
                continue
            if choice not in options:
                guess = closest(choice, options)
                hint = f" Did you mean '{guess}'?" if guess else ""
                _fail(f"'{choice}' is not an option of group '{key}'.{hint} Valid {key} options: {', '.join(options)}.")


def _record_sweep_failure(cfg, err: BaseException) -> None:
    """A sweep job that failed before training still writes its record and a failed row."""
    from hydra.core.hydra_config import HydraConfig

    from step.results.failed import record_setup_failure

    try:
        record_setup_failure(cfg, err, HydraConfig.get().runtime.output_dir)
    except Exception as exc:  # noqa: BLE001 - never let bookkeeping stop the sweep
        print(f"step: could not record the failed job: {exc}", file=sys.stderr)


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from step.engine import run

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        run(cfg)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: the runner saved the last finished epoch and the record
        _fail("interrupted; the last finished epoch is saved, continue with trainer.resume=auto.", 130)
    except StepError as err:
        if multirun:  # the record and row say what happened; the sweep goes on
            _record_sweep_failure(cfg, err)
            print(f"step: job failed: {err}", file=sys.stderr)
            return
        _fail(str(err), err.exit_code)
    except Exception as err:  # noqa: BLE001 - an unexpected bug: keep the sweep going, report it
        if multirun:
            _record_sweep_failure(cfg, err)
            logging.getLogger("step").exception("job failed: %s", err)
            return
        raise


def train_main() -> None:
    """``step-train [group=option ...] [key=value ...]`` (Hydra; ``-m`` for sweeps)."""
    import hydra

    import step  # noqa: F401  (registers components)
    from step.config.paths import conf_dir

    if not (conf_dir() / "train.yaml").exists():
        _fail(f"no configs at {conf_dir()}; install the project editable (`make install`) from its checkout.")
    check_overrides(sys.argv[1:])
    main = hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(_task)
    main()


def eval_main(argv: list[str] | None = None) -> None:
    """``step-eval CHECKPOINT``: evaluate a saved model on its config's test split."""
    parser = argparse.ArgumentParser(prog="step-eval", description=eval_main.__doc__)
    parser.add_argument("checkpoint", type=Path, help="model.pt written by step-train")
    parser.add_argument("--no-energy", action="store_true", help="skip energy and firing-rate counting")
    args = parser.parse_args(argv)
    try:
        from step.engine.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(args.checkpoint, energy=not args.no_energy)
    except StepError as err:
        _fail(str(err), err.exit_code)
    for key, value in result.items():
        print(f"{key}: {value}")


def convert_main(argv: list[str] | None = None) -> None:
    """``step-convert RELEASED.pth OUT.pt [overrides ...]``: a released checkpoint as a STEP model.pt."""
    parser = argparse.ArgumentParser(
        prog="step-convert", description=convert_main.__doc__,
        epilog="Example: step-convert spikformer-8-512.pth.tar out/model.pt experiment=spikformer-imagenet "
               "model=spikformer-8-512; then step-eval out/model.pt. See docs/fidelity.md.")
    parser.add_argument("released", type=Path, help="checkpoint file of the authors' code (.pth / .pth.tar)")
    parser.add_argument("output", type=Path, help="where to write the STEP checkpoint (model.pt)")
    parser.add_argument("overrides", nargs="*", help="run config overrides that build the model (as for step-train)")
    parser.add_argument("--family", default="auto",
                        help="spikformer | sdt | qkformer | meta-spikeformer (default: from the key layout)")
    args = parser.parse_args(argv)
    check_overrides(args.overrides)
    try:
        from step.models.convert import convert_file

        info = convert_file(args.released, args.overrides, args.output, args.family)
    except StepError as err:
        _fail(str(err), err.exit_code)
    print(f"step-convert: {info['released_keys']} released tensors ({info['family']}) -> {info['model']} "
          f"({info['params']:,} parameters, {info['num_classes']} classes): {info['output']}")


def list_main(argv: list[str] | None = None) -> None:
    """``step-list [kind]``: every registered component with its paper reference."""
    import step  # noqa: F401
    from step.registry import ALL_REGISTRIES

    parser = argparse.ArgumentParser(prog="step-list", description=list_main.__doc__)
    parser.add_argument("kind", nargs="?", choices=sorted(ALL_REGISTRIES), help="only this kind")
    args = parser.parse_args(argv)
    for kind, registry in ALL_REGISTRIES.items():
        if args.kind and kind != args.kind:
            continue
        print(f"{kind} ({len(registry)}):")
        for name in registry.names():
            entry = registry.entry(name)
            ref = f"  [{entry.paper}]" if entry.paper else ""
            print(f"  {name:<28} {entry.description[:70]}{ref}")
