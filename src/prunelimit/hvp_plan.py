"""What ``make check-gpu`` times and what it times it against (:mod:`prunelimit.gpu_check`, check c).

The Hessian-vector chunk of each paper task (:class:`ChunkSpec`, from ``workflow/presets/paper.yaml``),
and the projected HVP seconds of ``results/paper/plan.csv`` (written by ``benchmarks/paper_scale.py``)
per task (:func:`read_plan`, matched on a task column, else on model and dataset).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from .datasets import dataset as registered_dataset

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable from it)
PAPER_PRESET = ROOT / "workflow" / "presets" / "paper.yaml"
DEFAULT_PLAN = ROOT / "results" / "paper" / "plan.csv"

# plan.csv columns read, first match wins (benchmarks/paper_scale.py writes the plan). The projected
# seconds of one Hessian-vector product over the training set; a column whose name says "chunk" is
# read as seconds per chunk of chunk_size samples instead.
PLAN_KEY_COLUMNS = ("task",)
PLAN_MODEL_COLUMNS = ("model", "architecture", "arch")
PLAN_SECONDS_COLUMNS = ("hvp_s", "hvp_seconds", "projected_hvp_s", "planned_hvp_s", "hvp_time_s", "seconds_per_hvp",
                        "hvp_chunk_s", "chunk_hvp_s")
PLAN_FLOPS_COLUMNS = ("hvp_flops", "flops_per_hvp", "projected_hvp_flops", "hvp_flop")
PLAN_SAMPLES_COLUMNS = ("n_train", "n_samples", "train_samples", "samples")
PLAN_CHUNK_COLUMNS = ("chunk_size", "chunk")


@dataclass(frozen=True)
class ChunkSpec:
    """A paper task's Hessian-vector chunk: its model at the paper's shape and its chunk of samples."""

    task: str
    model: str
    dataset: str
    model_args: dict = field(hash=False)
    in_shape: tuple[int, int, int]
    num_classes: int
    params: str  # the Hessian's parameter set ("prunable" or "all")
    chunk_size: int  # samples per chunk (the preset's hessian.chunk_size)
    n_train: int | None  # samples of one product over the training set (None: unknown dataset)


def _train_size(name: str) -> int | None:
    """The official training-set size of a downloaded dataset (the registry's), None for the others."""
    samples = registered_dataset(name).samples
    return samples[0] if samples else None


def paper_chunks(preset: str | os.PathLike = PAPER_PRESET, tasks: list[str] | None = None) -> list[ChunkSpec]:
    """The chunk of each task of ``preset`` (all of them, or those named in ``tasks``, in that order)."""
    import yaml

    from .architectures import dataset_shape
    from .config import validate_config
    from .io import PrunelimitError
    from .settings import HessianSettings

    config = yaml.safe_load(Path(preset).read_text())
    validate_config(config)
    names = list(config["tasks"]) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in config["tasks"]]
    if unknown:
        raise PrunelimitError(f"tasks {unknown} are not in {preset}; it has {', '.join(config['tasks'])}")
    specs = []
    for task in names:
        entry = config["tasks"][task]
        hessian = HessianSettings.for_task(config, task)
        in_shape, classes = dataset_shape(entry["dataset"], config["datasets"].get(entry["dataset"]))
        specs.append(ChunkSpec(task, entry["model"], entry["dataset"], dict(entry["model_args"]), tuple(in_shape),
                               int(classes), hessian.params, int(hessian.chunk_size),
                               _train_size(entry["dataset"])))
    return specs


@dataclass
class PlanEntry:
    seconds: float | None  # projected seconds of one product over ``samples`` samples
    samples: int | None
    flops: float | None  # projected FLOPs of that product
    column: str  # the seconds column read


def _column(header: list[str], names: tuple[str, ...]) -> str | None:
    lower = {h.strip().lower(): h for h in header}
    for name in names:
        if name in lower:
            return lower[name]
    return None


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def read_plan(path: str | os.PathLike, specs: list[ChunkSpec]) -> tuple[dict[str, PlanEntry], str]:
    """The plan's projected HVP per task of ``specs`` (matched on a task column, else on model and
    dataset), and a line saying what was read or why nothing was."""
    path = Path(path)
    if not path.is_file():
        return {}, f"plan missing ({path}; benchmarks/paper_scale.py writes it): measured times only"
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        records = list(reader)
    seconds_col = _column(header, PLAN_SECONDS_COLUMNS)
    if seconds_col is None:  # any other column naming HVP seconds
        seconds_col = next((h for h in header if "hvp" in h.lower() and "flop" not in h.lower()
                            and (h.lower().endswith("_s") or "sec" in h.lower())), None)
    if seconds_col is None:
        return {}, f"plan {path} has no HVP seconds column (columns: {', '.join(header)}): measured times only"
    flops_col = _column(header, PLAN_FLOPS_COLUMNS)
    samples_col = _column(header, PLAN_CHUNK_COLUMNS if "chunk" in seconds_col.lower() else PLAN_SAMPLES_COLUMNS)
    task_col, model_col = _column(header, PLAN_KEY_COLUMNS), _column(header, PLAN_MODEL_COLUMNS)
    dataset_col = _column(header, ("dataset",))
    plan = {}
    for spec in specs:
        if task_col is not None:
            match = [r for r in records if r[task_col].strip() == spec.task]
        elif model_col is not None:
            match = [r for r in records if r[model_col].strip() == spec.model
                     and (dataset_col is None or r[dataset_col].strip() == spec.dataset)]
        else:
            match = []
        if match:
            record = match[0]
            samples = _number(record[samples_col]) if samples_col else None
            if samples is None:
                samples = spec.chunk_size if "chunk" in seconds_col.lower() else spec.n_train
            plan[spec.task] = PlanEntry(_number(record[seconds_col]), int(samples) if samples else None,
                                        _number(record[flops_col]) if flops_col else None, seconds_col)
    return plan, f"plan {path}: column {seconds_col!r}, {len(plan)} of {len(specs)} tasks planned"
