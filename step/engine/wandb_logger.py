"""``logger=wandb``: Weights & Biases beside ``metrics.csv`` (offline unless told otherwise).

Where each wandb setting comes from (a config value wins, then the environment, then the default):

| setting | config | environment | default |
|---|---|---|---|
| project | ``logger.project`` | ``WANDB_PROJECT`` | ``step`` |
| entity | ``logger.entity`` | ``WANDB_ENTITY`` | your wandb default |
| dir | ``logger.dir`` | ``WANDB_DIR`` | the run folder |
| mode | ``WANDB_MODE`` (the environment wins here) | | ``logger.mode`` (offline) |
| group | ``logger.group`` | | a sweep job: its sweep folder's name; else none |
| tags | ``logger.tags`` + the run's ``tags`` | | + a sweep job's values of the swept keys (``key=value``) |

Each epoch's row goes to the history; at the end the final test metrics and the energy columns are
logged as one more history row (with the per-layer energy table) and put in the summary, with the
leaderboard row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from step.engine.loggers import RunLogger, env_or

#: wandb refuses tags longer than this
MAX_TAG = 64


def swept_keys(sweep_dir: Path) -> set[str] | None:
    """The keys a sweep varies: its command line's sweep overrides (``a=x,y``, ``range(..)``) and the
    sweeper's ``params`` (suites), read from the ``multirun.yaml`` Hydra writes before the first job."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    try:
        saved = OmegaConf.load(sweep_dir / "multirun.yaml").hydra
        given = [str(o) for o in saved.overrides.task]
        params = saved.sweeper.get("params") or {}
    except Exception:  # noqa: BLE001 - no multirun.yaml: every override counts
        return None
    keys = {o.get_key_element().lstrip("+~") for o in OverridesParser.create().parse_overrides(given)
            if o.is_sweep_override()}
    return keys | {str(k).lstrip("+~") for k in params}


def sweep_identity() -> tuple[str | None, list[str]]:
    """For a Hydra multirun job: (its sweep folder's name, its values of the swept keys as ``key=value``);
    else (None, [])."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized():
            return None, []
        hydra = HydraConfig.get()
        if hydra.mode != RunMode.MULTIRUN:
            return None, []
        sweep_dir = Path(hydra.runtime.output_dir).parent  # sweep.dir/<job subdir>
        overrides = [str(o) for o in hydra.overrides.task]
    except Exception:  # noqa: BLE001 - no Hydra context: a plain run
        return None, []
    keys = swept_keys(sweep_dir)
    if keys is not None:
        overrides = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") in keys]
    return sweep_dir.name, overrides


def wandb_settings(logger: DictConfig, run_dir: Path, run_tags: list[str] | None = None) -> dict[str, Any]:
    """The keyword arguments of ``wandb.init`` (see the module's table)."""
    import os

    group, overrides = sweep_identity()
    tags = [*(logger.get("tags") or []), *(run_tags or []), *overrides]
    tags = list(dict.fromkeys(t[:MAX_TAG] for t in map(str, tags) if t))
    return dict(
        project=env_or(logger.get("project"), "WANDB_PROJECT", "step"),
        entity=env_or(logger.get("entity"), "WANDB_ENTITY"),
        dir=str(env_or(logger.get("dir"), "WANDB_DIR", str(run_dir))),
        mode=os.environ.get("WANDB_MODE") or logger.get("mode") or "offline",
        group=logger.get("group") or group,
        tags=tags or None,
    )


class WandbLogger(RunLogger):
    """Logs config, per-epoch rows, the final metrics, the energy table and the record to wandb."""

    def __init__(self, logger: DictConfig, run_dir: Path, config: dict[str, Any], name: str):
        import wandb  # lazy: heavy import, only when asked for

        self.wandb = wandb
        self.settings = wandb_settings(logger, run_dir, list(config.get("tags") or []))
        Path(self.settings["dir"]).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(config=config, name=name, reinit="finish_previous", **self.settings)

    def log(self, row: dict[str, Any]) -> None:
        self.run.log(row)

    def finish(self, record: dict[str, Any]) -> None:
        final: dict[str, Any] = {f"test_{k}": v for k, v in record.get("metrics", {}).items()}
        if record.get("test_loss") is not None:
            final["test_loss"] = record["test_loss"]
        final.update({k: v for k, v in record.get("energy_columns", {}).items() if isinstance(v, (int, float))})
        layers = (record.get("energy") or {}).get("per_layer")
        if layers:
            cols = list(layers[0])
            cell = lambda v: v if isinstance(v, (int, float, str, bool)) or v is None else str(v)  # noqa: E731
            final["energy_per_layer"] = self.wandb.Table(columns=cols, data=[[cell(r.get(c)) for c in cols]
                                                                             for r in layers])
        if final:
            self.run.log(final)  # the last history row: final test metrics and energy
        summary = {k: v for k, v in record.get("leaderboard_row", {}).items() if v not in (None, "")}
        summary.update({k: v for k, v in final.items() if k != "energy_per_layer"})
        summary.update(status=record.get("status"), record_path=record.get("record_path"))
        self.run.summary.update(summary)
        self.run.finish()

