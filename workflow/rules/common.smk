# Shared set-up: config validation, names, wildcard constraints and input functions.
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(
    0, str(Path(workflow.basedir) / "src")
)  # the library, also when not pip-installed
# Parsing imports no torch (seconds per snakemake call): parameter counts come from the torch-free
# layer lists of prunelimit.architectures (tests/test_architectures.py).
from prunelimit.architectures import dataset_shape, parameter_count  # noqa: E402
from prunelimit.config import (
    check_task_references,
    main_study_tasks,
    regime_multiplier,
    regime_variant,
    task_spec,
    validate_config,
)  # noqa: E402
from prunelimit.errors import PrunelimitError  # noqa: E402

try:
    validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
    check_task_references(config)
except (PrunelimitError, ValueError) as _err:
    # one line naming the key; snakemake's validate() would follow it with the whole schema
    raise WorkflowError(str(_err)) from None

RESULTS = f"results/{config['preset']}"
# the paper's figures and tables; a task with in_main_study: false is built only where a section lists it
TASKS = main_study_tasks(config)
ALL_TASKS = list(config["tasks"])
VARIANTS = list(config["variants"])
DATASETS = sorted({t["dataset"] for t in config["tasks"].values()})
THEORY_VARIANT = (
    "l1" if "l1" in VARIANTS else VARIANTS[0]
)  # the theory and LOMP use the L1 model


wildcard_constraints:
    task="|".join(ALL_TASKS),
    # the configured variants and the regime map's l1x<multiplier> ones (prunelimit.config.regime_variant)
    variant="|".join(VARIANTS + [r"l1x[0-9.e+-]+"]),
    dataset="|".join(DATASETS),


def hessian_settings(task):
    """The hessian section with the task's own overrides (e.g. AlexNet's 96 Lanczos steps)."""
    return {**config.get("hessian", {}), **config["tasks"][task].get("hessian", {})}


def hessian_dim(task):
    """D of the task's Hessian (prunable weights or all parameters, as config hessian.params says)."""
    entry = config["tasks"][task]
    in_shape, classes = dataset_shape(
        entry["dataset"], config["datasets"].get(entry["dataset"], {})
    )
    counts = parameter_count(
        entry["model"], in_shape, classes, **entry.get("model_args", {})
    )
    all_params = hessian_settings(task).get("params", "prunable") == "all"
    return counts.all if all_params else counts.prunable


# Tasks small enough (D ≤ hessian.exact_max_params) for the dense exact spectrum.
EXACT_TASKS = [
    t for t in TASKS if hessian_dim(t) <= config["hessian"]["exact_max_params"]
]


def spectrum_settings(task, keys=None):
    """The task's hessian settings an output depends on (so others do not trigger reruns)."""
    settings = hessian_settings(task)
    keys = keys or [k for k in settings if k != "exact_max_params"]
    return {k: settings[k] for k in keys if k in settings}


def baseline_spec(task):
    """The task's dense recipe, trained for baselines.epochs when set (IMP retrains every round)."""
    spec = task_spec(config, task, "dense")
    if config["baselines"]["epochs"]:
        spec["train"]["epochs"] = int(config["baselines"]["epochs"])
    return spec


def dataset_of(wildcards):
    return f"{RESULTS}/data/{config['tasks'][wildcards.task]['dataset']}.npz"


def trained(task, variant=THEORY_VARIANT):
    base = f"{RESULTS}/train/{task}/{variant}"
    return {"model": f"{base}/model.pt", "metrics": f"{base}/metrics.json"}


# The regime map (workflow/rules/regime.smk): tasks, their l1x<m> training variants, files
REGIME = config["regime"]
REGIME_TASKS = list(REGIME["tasks"])
REGIME_POINTS = [regime_variant(m) for m in REGIME["l1_multipliers"]]
REGIME_DIR = f"{RESULTS}/regime/{{task}}/{{point}}"


def regime_model_variant(point):
    """The trained variant behind a map point: m = 0 is the dense recipe and m = 1 the task's own L1
    recipe, so those points reuse the main study's models instead of training them twice.
    """
    shared = {0.0: "dense", 1.0: "l1"}.get(regime_multiplier(point))
    return shared if shared in VARIANTS else point


def regime_trained(w):
    return trained(w.task, regime_model_variant(w.point))


def regime_exact(w):
    """The exact spectrum where the task is small enough (D ≤ hessian.exact_max_params), as in the main study."""
    small = hessian_dim(w.task) <= config["hessian"]["exact_max_params"]
    return f"{RESULTS}/regime/{w.task}/{w.point}/exact.npz" if small else []


def regime_files(name, kind="regime"):
    """One file per (task, point) of the map, tasks outer, points in config order."""
    if kind == "train":
        return [
            f"{RESULTS}/train/{t}/{regime_model_variant(p)}/{name}"
            for t in REGIME_TASKS
            for p in REGIME_POINTS
        ]
    return [
        f"{RESULTS}/regime/{t}/{p}/{name}" for t in REGIME_TASKS for p in REGIME_POINTS
    ]


# Each rule file appends its final targets here; `rule all` asks for all of them.
FINAL_OUTPUTS = []


def get_final_output():
    return FINAL_OUTPUTS
