"""Resolving the validated pipeline config into per-task specs (the library's view of config.yaml).

The workflow validates the config and calls task_spec while it parses and builds the DAG, so this
module imports torch only inside the functions that need it: a dry run stays torch-free.
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from . import datasets, methods
from .architectures import ARCHITECTURES, check_model_args, dataset_shape, parameter_count
from .errors import PrunelimitError

if TYPE_CHECKING:
    import torch


def _error(message: str) -> Exception:
    return PrunelimitError(message)


TASK_LIST_SECTIONS = ("iterative", "baselines", "oneshot", "tv_distance", "regime")

# Regime-map variants: the task's L1 recipe with λ multiplied by m, named "l1x<m>" (m as Python's
# :g formats it, e.g. l1x0, l1x0.03, l1x3), so a model's directory says which point it is.
REGIME_PREFIX = "l1x"


def regime_variant(multiplier: float) -> str:
    """The training variant of the regime-map point with λ = ``multiplier`` × the task's λ."""
    return f"{REGIME_PREFIX}{float(multiplier):g}"


def regime_multiplier(variant: str) -> float | None:
    """The λ multiplier of a regime variant name, or None when ``variant`` is not one (only the
    canonical spelling counts: l1x0.30 is refused, so one point never trains under two names)."""
    if not variant.startswith(REGIME_PREFIX):
        return None
    try:
        multiplier = float(variant[len(REGIME_PREFIX):])
    except ValueError:
        return None
    if not (math.isfinite(multiplier) and multiplier >= 0) or regime_variant(multiplier) != variant:
        return None
    return multiplier


def main_study_tasks(config: dict) -> list[str]:
    """The tasks of the paper's figures and tables (of a validated config): every task not marked
    ``in_main_study: false`` (those are trained and analysed only by the experiments that list them,
    e.g. regime.tasks)."""
    return [t for t, entry in config["tasks"].items() if entry["in_main_study"]]


def check_task_references(config: dict) -> None:
    """Stop on a section's ``tasks`` list naming a task the config does not define (the workflow
    runs this after the schema, which cannot express cross-references), and on a regime task
    without an L1 coefficient (every multiple of λ = 0 is the dense model: no map)."""
    tasks = list(config["tasks"])
    for section in TASK_LIST_SECTIONS:
        unknown = sorted(set(config[section]["tasks"]) - set(tasks))
        if unknown:
            raise ValueError(f"config key {section}.tasks names unknown task(s) {unknown}; tasks: {tasks}")
    no_l1 = [t for t in config["regime"]["tasks"]
             if not (float(config["tasks"][t].get("l1", 0)) > 0 or "l1_shrinkage" in config["tasks"][t])]
    if no_l1:
        raise ValueError(f"config key regime.tasks names task(s) {no_l1} without a positive l1 or l1_shrinkage: "
                         f"the regime map scales each task's own L1 strength")
    unknown = sorted(set(config["oneshot"]["overrides"]) - set(tasks))
    if unknown:
        raise ValueError(f"config key oneshot.overrides names unknown task(s) {unknown}; tasks: {tasks}")

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def nonfinite_numbers(obj, path=()) -> list[str]:
    """Dotted keys of every NaN or ±inf in a config (YAML's .nan/.inf pass any min/max in the schema)."""
    if isinstance(obj, dict):
        return [k for key, v in obj.items() for k in nonfinite_numbers(v, (*path, key))]
    if isinstance(obj, list):
        return [k for i, v in enumerate(obj) for k in nonfinite_numbers(v, (*path, i))]
    if isinstance(obj, float) and not math.isfinite(obj):
        return [f"{_where(path)} = {obj}"]
    return []


def load_schema(schema: str | os.PathLike = SCHEMA) -> dict:
    """The config schema with the registries' names as its enums: datasets (prunelimit.datasets), models
    (prunelimit.architectures.ARCHITECTURES) and each comparison's methods (prunelimit.methods). The schema file lists
    none of them, so a new dataset, model or method is one registry entry, not also a schema edit."""
    doc = yaml.safe_load(Path(schema).read_text())
    doc["$defs"]["dataset_name"]["enum"] = list(datasets.NAMES)
    doc["$defs"]["task"]["properties"]["model"]["enum"] = list(ARCHITECTURES)
    for comparison in methods.COMPARISONS:
        doc["properties"][comparison]["properties"]["methods"]["items"]["enum"] = methods.names(comparison)
    return doc


def validate_config(config: dict, schema: str | os.PathLike = SCHEMA) -> None:
    """Check a pipeline config against the schema, in one line naming every bad key or value.

    Beyond the schema: numbers must be finite and each task's ``model_args`` must be arguments its
    model takes, of the types its architecture declares (prunelimit.architectures; a typo would
    otherwise surface as a TypeError deep inside a rule). Then fills in
    the schema's defaults (:func:`fill_defaults`).
    """
    import jsonschema  # here, not at the top: only the workflow validates, and jobs import this module

    schema_doc = load_schema(schema)
    validator = jsonschema.Draft202012Validator(schema_doc)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path]):
        message = err.message if len(err.message) <= 160 else err.message[:157] + "..."
        problems.append(f"at {_where(err.absolute_path)}: {message}")
    problems += [f"{key}: numbers must be finite" for key in nonfinite_numbers(config)]
    if problems:
        more = f" (and {len(problems) - 4} more)" if len(problems) > 4 else ""
        raise PrunelimitError(f"invalid config {'; '.join(problems[:4])}{more}")
    fill_defaults(config, schema_doc, schema_doc)
    for task, entry in config["tasks"].items():
        try:
            check_model_args(entry["model"], entry["model_args"])
        except PrunelimitError as err:
            raise PrunelimitError(f"invalid config at tasks.{task}: {err}") from None
        # names and types are right; building the torch-free description catches what else its code refuses
        in_shape, classes = dataset_shape(entry["dataset"], config["datasets"].get(entry["dataset"]))
        try:
            parameter_count(entry["model"], in_shape, classes, **entry["model_args"])
        except (TypeError, ValueError, ArithmeticError) as err:
            raise PrunelimitError(f"invalid config at tasks.{task}.model_args: {entry['model']} cannot be built with "
                                  f"{entry['model_args']} ({type(err).__name__}: {err})") from None


def fill_defaults(instance, schema: dict, root: dict) -> None:
    """Set, in place, every key the schema gives a ``default`` and ``instance`` lacks, at any depth
    (through ``$ref``, ``allOf`` and the ``additionalProperties`` of named maps such as tasks).

    The schema is the one place for defaults: after validation every section the rules read is
    complete, and no caller repeats a default with ``.get(key, default)``.
    """
    if "$ref" in schema:  # only local refs: #/$defs/<name>
        fill_defaults(instance, root["$defs"][schema["$ref"].rsplit("/", 1)[-1]], root)
    for sub in schema.get("allOf", []):
        fill_defaults(instance, sub, root)
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        if key in instance:
            fill_defaults(instance[key], sub, root)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for key in set(instance) - set(schema.get("properties", {})):
            fill_defaults(instance[key], extra, root)


def task_spec(config: dict, task: str, variant: str, seed: int | None = None) -> dict:
    """The resolved recipe of ``task`` trained as ``variant``, optionally reseeded.

    ``dense``: λ = 0; ``l1``: the task's λ; ``l1x<m>`` (:func:`regime_variant`): m × the task's λ,
    everything else the task's recipe (the regime map's points go through the same train rule).
    """
    tasks = config["tasks"]
    if task not in tasks:
        raise _error(f"unknown task {task!r}; tasks in the config: {', '.join(tasks)}")
    multiplier = {"dense": 0.0, "l1": 1.0}.get(variant, regime_multiplier(variant))
    if multiplier is None:
        raise _error(f"unknown variant {variant!r}; use dense, l1 or {REGIME_PREFIX}<multiplier of λ> (e.g. "
                     f"{regime_variant(0.1)})")
    entry = tasks[task]
    train = {**copy.deepcopy(config["train_defaults"]), **copy.deepcopy(entry["train"])}
    train["l1"] = multiplier * float(entry.get("l1", 0.0))
    if multiplier and "l1_shrinkage" in entry:  # λ follows from the (scaled) target at train time
        train["l1_shrinkage"] = multiplier * float(entry["l1_shrinkage"])
    bad = nonfinite_numbers(train)
    if bad:  # for callers that skip validate_config: NaN would train silently to garbage
        raise PrunelimitError(f"task {task}: training option {bad[0]}; numbers must be finite")
    if seed is not None:
        train["seed"] = int(seed)
        variant = f"{variant}_seed{seed}"
    return {"task": task, "variant": variant, "model": entry["model"], "dataset": entry["dataset"],
            "model_args": copy.deepcopy(entry["model_args"]), "train": train}


def resolve_device(name: str = "auto") -> torch.device:
    """The device chosen once for a job: cuda if asked or available (auto), else cpu."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise _error("device: cuda was requested but no CUDA device is available")
    return torch.device(name)
