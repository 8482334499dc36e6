"""Adds the project's ``experiments/`` folder to Hydra's search path.

So ``experiment=<name>`` (experiments/experiment/*.yaml), ``suite=<name>`` and ``scale=cpu`` work
from any directory, with no path in any config.
"""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class StepExperimentsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from step.config.paths import experiments_dir

        path = experiments_dir()
        if path.is_dir():
            search_path.append(provider="step-experiments", path=f"file://{path}")
