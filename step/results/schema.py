"""The leaderboard's columns, versioned. Bump ``SCHEMA_VERSION`` when columns change.

| column | meaning |
|---|---|
| schema_version | version of this column list |
| run_id | unique id of the run (also its output folder name) |
| time | UTC end time, ISO 8601 |
| git_commit | commit of the code that ran (``+dirty`` when the tree had changes) |
| source | ``run`` for rows written by a run; ``paper`` only in results/reference.csv |
| experiment | the config's ``name`` (e.g. ``demo``) |
| task, dataset, model, attention, neuron, surrogate, encoder, backend | the component names |
| T, seed, params | timesteps, seed, trainable parameters |
| config_hash | hash of the resolved config without seed, name, paths and logger (:func:`step.config.identity.config_hash`): rows pool over seeds only when it matches |
| metric_name, metric | the task's primary metric (e.g. ``top1``, in %) and its final test value |
| energy_mj ... firing_rate | energy per inference (mJ) under the default, memory-aware, ANN-twin and INT8-twin models; synaptic ops; mean firing rate (all under the ``paper`` counting convention) |
| energy_exact_mj | energy per inference (mJ) under the default model with the ``exact`` (event-driven, in-bounds fan-out) counting convention; added in version 3 |
| spike_driven | ``yes``: every weight layer read spikes (binary, ternary or integer counts) apart from the encoding layer, the classifier head on pooled features and the inner layers of re-parameterisable chains; ``no``: some did (listed in the record under ``energy.spike_driven``); ``ann``: an ANN twin (no spiking neuron, not audited); empty: energy not measured. Added in version 4 |
| epochs, wall_time_s, device | training length, seconds end to end, the device used |
| status, error | ``ok``, ``failed``, ``diverged`` or ``interrupted``, and the error message |
| record_path, command | the run's record.json (relative to the output root) and the command that made it |

Version 2 added ``config_hash`` and made ``record_path`` relative; version 3 added
``energy_exact_mj``; version 4 added ``spike_driven``. ``step-board --migrate CSV``
rewrites a file of an older version (missing columns empty, or derived from the run's record).
"""

SCHEMA_VERSION = 4

COLUMNS = [
    "schema_version",
    "run_id",
    "time",
    "git_commit",
    "source",
    "experiment",
    "task",
    "dataset",
    "model",
    "attention",
    "neuron",
    "surrogate",
    "encoder",
    "backend",
    "T",
    "seed",
    "params",
    "config_hash",
    "metric_name",
    "metric",
    "energy_mj",
    "energy_exact_mj",
    "energy_mem_mj",
    "energy_ann_mj",
    "energy_int8_mj",
    "sops",
    "firing_rate",
    "spike_driven",
    "epochs",
    "wall_time_s",
    "device",
    "status",
    "error",
    "record_path",
    "command",
]
