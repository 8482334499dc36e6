"""``python -m step.train [overrides]``: the same Hydra entry as ``step-train``, for ``torchrun``.

``torchrun --nproc_per_node=4 -m step.train model=spikformer dataset=cifar10 trainer.batch_size=128``
starts four processes; :mod:`step.engine.distributed` joins them into one DistributedDataParallel
run. Only rank 0 keeps a Hydra run folder; the other ranks run with Hydra's output folder and log
files switched off, so a run leaves exactly one folder, one record and one leaderboard row.
"""

from __future__ import annotations

import os
import sys

#: Hydra overrides for ranks other than 0: no .hydra/ folder, no log file, no new run folder
NON_MAIN_OVERRIDES = ("hydra.output_subdir=null", "hydra/job_logging=disabled",
                      "hydra/hydra_logging=disabled", "hydra.run.dir=.")


def main() -> None:
    from step.cli import train_main

    if int(os.environ.get("RANK", "0")) != 0:
        sys.argv.extend(NON_MAIN_OVERRIDES)
    train_main()


if __name__ == "__main__":
    main()
