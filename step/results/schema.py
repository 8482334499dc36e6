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
| metric_name, metric | the task's primary metric (e.g. ``top1``, in %) and its final test value |
| energy_mj ... firing_rate | energy per inference (mJ) under the default, memory-aware, ANN-twin and INT8-twin models; synaptic ops; mean firing rate |
| spike_driven | ``yes``: every weight layer read spikes (binary, ternary or integer counts) apart from the encoding layer, the classifier head on pooled features and the inner layers of re-parameterisable chains; ``no``: some did (listed in the record under ``energy.spike_driven``); ``ann``: an ANN twin (no spiking neuron, not audited); empty: energy not measured. Added in version 2 |
| epochs, wall_time_s, device | training length, seconds end to end, the device used |
| status, error | ``ok``, ``failed``, ``diverged`` or ``interrupted``, and the error message |
| record_path, command | the run's record.json and the command that made it |
"""

SCHEMA_VERSION = 2

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
    "metric_name",
    "metric",
    "energy_mj",
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
