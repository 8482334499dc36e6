"""The runner: ``step.engine.run(cfg)`` trains, evaluates, measures energy and records."""

from step.engine.run import run

__all__ = ["run"]
