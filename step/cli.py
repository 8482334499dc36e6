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


def _closest_nested(key: str) -> str | None:
    """``epochs`` -> ``trainer.epochs``: the ``group.key`` of the default config that reads most like ``key``."""
    from omegaconf import OmegaConf

    from step.config import compose
    from step.config.keys import suggest_dotted

    try:
        return suggest_dotted(key, OmegaConf.to_container(compose([]), resolve=False))
    except Exception:  # noqa: BLE001 - no suggestion rather than a second error
        return None


def _better(key: str, group_guess: str | None, nested_guess: str | None) -> str | None:
    """A group or setting name unless a nested key reads clearly closer (``modle``: ``model``, not
    ``logger.mode``; ``epochs``: ``trainer.epochs``, not ``paths``)."""
    from difflib import SequenceMatcher

    def score(guess: str | None) -> float:
        return SequenceMatcher(None, key, guess.rsplit(".", 1)[-1]).ratio() if guess else 0.0

    return nested_guess if score(nested_guess) >= score(group_guess) + 0.15 else group_guess or nested_guess


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
            guess = _better(key, closest(key, groups + sorted(ROOT_KEYS)), _closest_nested(key))
            hint = f" Did you mean '{guess}'?" if guess else ""
            _fail(f"'{key}' is not a config group or setting.{hint} Groups: {', '.join(groups)}; "
                  f"settings: {', '.join(sorted(ROOT_KEYS))}. Set a single value with group.key=value.")
        options = _group_options(key)
        for choice in value.strip("[]").split(","):  # a sweep a,b or a list [a,b] (logger=[csv,wandb])
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


def _interrupt_code(err: BaseException) -> int:
    """128 + the signal number, as shells report it: 143 for SIGTERM, 130 for Ctrl-C (SIGINT)."""
    return 143 if "SIGTERM" in str(err) else 130


def discard() -> bool:
    """Remove the folder Hydra made for a single run that wrote nothing (refused, or stopped before it began)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from step.engine.resume import remove_unused_run_dir

    try:
        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN or not hydra_cfg.runtime.output_dir:
            return False
        return remove_unused_run_dir(hydra_cfg.runtime.output_dir, _output_root(sys.argv[1:]))
    except Exception:  # noqa: BLE001 - Hydra had not made a folder yet
        return False


def _task(cfg) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from step.engine import run
    from step.engine.signals import start_job

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN

    try:
        start_job()  # a SIGTERM or Ctrl-C held while Hydra set up is raised here
        run(cfg)
    except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: the runner saved the last finished epoch and the record
        if discard():
            _fail("interrupted before training started; nothing was written.", _interrupt_code(err))
        _fail("interrupted; the last finished epoch is saved, continue with trainer.resume=auto.", _interrupt_code(err))
    except StepError as err:
        if multirun:  # the record and row say what happened; the sweep goes on
            _record_sweep_failure(cfg, err)
            print(f"step: job failed: {err}", file=sys.stderr)
            return
        discard()
        _fail(str(err), err.exit_code)
    except Exception as err:  # noqa: BLE001 - an unexpected bug: keep the sweep going, report it
        if multirun:
            _record_sweep_failure(cfg, err)
            logging.getLogger("step").exception("job failed: %s", err)
            return
        discard()
        raise


#: Hydra flags that print and exit without running a job (nothing needs writing)
_NO_RUN_FLAGS = {"--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc"}


def _output_root(argv: list[str]) -> Path:
    """The output root the command line asks for (``paths.output_root=``), else STEP_OUT, else outputs/."""
    from step.config.paths import output_root

    for arg in argv:
        if arg.lstrip("+").startswith("paths.output_root="):
            return Path(arg.split("=", 1)[1])
    return output_root()


def preflight(argv: list[str]) -> None:
    """What must hold before Hydra makes a folder: known groups and options, names that stay one
    folder name, and an output root that can be written."""
    from step.config.keys import check_override_keys
    from step.config.names import check_override_names
    from step.engine.preflight import check_writable

    check_overrides(argv)
    check_override_keys(argv, _groups())  # trainer.epoch=1 -> did you mean trainer.epochs
    check_override_names(argv)
    if not any(a in _NO_RUN_FLAGS or a.startswith("--cfg") for a in argv):
        check_writable(_output_root(argv), "paths.output_root",
                       "set STEP_OUT (or paths.output_root=...) to a folder you can write")


def train_main() -> None:
    """``step-train [group=option ...] [key=value ...]`` (Hydra; ``-m`` for sweeps)."""
    import hydra

    import step  # noqa: F401  (registers components)
    from step import sweep
    from step.config.paths import conf_dir
    from step.engine.signals import hold_until_job, start_job

    if not (conf_dir() / "train.yaml").exists():
        _fail(f"no configs at {conf_dir()}; install the project editable (`make install`) from its checkout.")
    hold_until_job()  # SIGTERM / Ctrl-C are taken when the job starts (exit 143 / 130, no folder left)
    try:
        preflight(sys.argv[1:])
        main = hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(_task)
        main()
        start_job()  # a signal held through a run Hydra never started (--cfg, --help)
    except StepError as err:
        _fail(str(err), err.exit_code)
    except KeyboardInterrupt as err:  # before or after the job ran (Hydra's own set-up and tear-down)
        discard()
        _fail("interrupted.", _interrupt_code(err))
    if sweep.FAILED:
        listed = "; ".join(f"{job} ({status})" for job, status in sweep.FAILED[:5])
        more = f" and {len(sweep.FAILED) - 5} more" if len(sweep.FAILED) > 5 else ""
        _fail(f"{len(sweep.FAILED)} job(s) of the sweep did not finish ok: {listed}{more}. Their records and "
              "leaderboard rows say why.", 1)


def eval_main(argv: list[str] | None = None) -> None:
    """``step-eval CHECKPOINT [--T N | T=N]``: evaluate a saved model on its config's test split.

    The model is rebuilt from the checkpoint's own config (model, attention, neuron, encoder, ...);
    ``--T N`` (or ``T=N``) evaluates it at N time steps instead of the T it was trained with.
    Nothing is written.
    """
    parser = argparse.ArgumentParser(prog="step-eval", description=eval_main.__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="model.pt (or last.pt) written by step-train")
    parser.add_argument("settings", nargs="*", metavar="T=N", help="the same as --T N")
    parser.add_argument("--T", type=int, default=None, help="time steps to evaluate at (default: the checkpoint's)")
    parser.add_argument("--no-energy", action="store_true", help="skip energy and firing-rate counting")
    args = parser.parse_args(argv)
    T = args.T
    for item in args.settings:
        key, _, value = item.partition("=")
        if key != "T" or not value.isdigit():
            _fail(f"step-eval takes T=N (time steps) beside the checkpoint, got '{item}'; the rest of the "
                  "config is the checkpoint's own.")
        T = int(value)
    try:
        from step.engine.evaluate import evaluate_checkpoint

        result = evaluate_checkpoint(args.checkpoint, energy=not args.no_energy, T=T)
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
