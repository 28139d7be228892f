"""The pruning-method registry: every method the pipeline compares, one entry each.

An entry gives the method's name (its config and wildcard name), its label (tables and figures), the
comparison it belongs to, how the workflow runs it, its typed settings (its config block) and its entry
point. The schema's method enums, the typed settings of ``baselines`` and ``oneshot``, the Snakemake
wildcard constraints, the table labels and the dispatch all read this table (tests/test_methods.py checks
the schema against it), so adding a method is an entry here, its implementation and its schema block.

Two comparisons:
- ``baselines`` (table lomp_vs_baselines, the paper's Table 2): LOMP, read from the L1 model's one-shot
  sweep, against methods that train under their masks (IMP, Rare Gems, Smart-Ratio).
- ``oneshot`` (table lomp_vs_sota, the paper's appendix table against the optimal-brain-surgeon family):
  one-shot methods without retraining, each applied to the dense and to the L1-trained model; magnitude
  pruning of the L1 model is LOMP.

Torch-free (the workflow's parse imports it): entry points are "module:function" strings, imported when run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .entries import resolve
from .errors import PrunelimitError
from .sections import Section

# ---------------------------------------------------------------------------------------------
# Each method's settings: its config block (baselines.<name> or oneshot.<name>), defaults in the schema
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainingSettings(Section):
    """The settings of a baseline that trains under its masks."""

    def training_budget(self, epochs: int) -> str:
        """What one run trains, in epochs of the task's recipe (the baselines table states it per method)."""
        return f"{epochs}"


@dataclass(frozen=True)
class ImpSettings(TrainingSettings):
    fraction_per_round: float
    rewind_epoch: int

    def training_budget(self, epochs: int) -> str:  # the rounds per target sparsity are in each result's `rounds`
        rewind = int(self.rewind_epoch)
        return f"{epochs} dense, then {epochs - rewind} per round (rewound to epoch {rewind})"


@dataclass(frozen=True)
class RareGemsSettings(TrainingSettings):
    prune_every: int
    score_l2: float
    score_lr: float

    def training_budget(self, epochs: int) -> str:
        return f"{epochs} on scores + {epochs} on weights"


@dataclass(frozen=True)
class SmartRatioSettings(TrainingSettings):
    classifier_ratio: float


@dataclass(frozen=True)
class MagnitudeSettings(Section):
    pass  # global magnitude pruning has no setting


@dataclass(frozen=True)
class WoodFisherSettings(Section):
    damp: float  # λ of F = λI + GᵀG/N
    joint: bool  # the joint OBS update of all pruned weights (else WoodFisher's sum of single-weight updates)


@dataclass(frozen=True)
class CbsSettings(Section):
    damp: float
    swaps: int  # greedy swaps per block
    candidates: int  # weights of each side a swap is searched among
    start: str  # "magnitude" | "woodfisher": the selection the swaps start from


@dataclass(frozen=True)
class ChitaSettings(Section):
    ridge: float  # λ₂ of the ridge term
    iters: int  # IHT iterations per block
    stages: int  # 1: CHITA; more: CHITA++ (the gradients recomputed before each stage)


# ---------------------------------------------------------------------------------------------
# The registry
# ---------------------------------------------------------------------------------------------

COMPARISONS = ("baselines", "oneshot")
# how the workflow runs a method: "sweep" (LOMP: read from the L1 model's one-shot sweep), "trajectory" (one job
# per seed serves every sparsity: IMP), "per_sparsity" (one job per sparsity and seed), "oneshot" (every one-shot
# method in the job of a (task, starting model, seed), sharing its per-sample gradients)
RUNS = ("sweep", "trajectory", "per_sparsity", "oneshot")


@dataclass(frozen=True)
class Method:
    name: str
    label: str
    comparison: str  # one of COMPARISONS
    runs: str  # one of RUNS
    settings: type[Section] | None  # its config block, typed; None: no block
    entry: str | None  # "module:function" doing one run (None: LOMP's rows come from the sweep)
    source: str  # where the algorithm and its constants come from

    def run(self) -> Callable:
        """The entry point, imported now (it may import torch)."""
        if self.entry is None:
            raise PrunelimitError(f"method {self.name} has no entry point ({self.runs} rows are read, not run)")
        return resolve(self.entry)


_ONESHOT = "prunelimit.baselines.oneshot:prune_model"
# registry order is table order (the baselines in the paper's Table 2 order)
REGISTRY: dict[str, Method] = {m.name: m for m in (
    Method("lomp", "LOMP", "baselines", "sweep", None, None,
           "[code] QiaozheZhang/Global-One-shot-Pruning get_sparse_model: one-shot global magnitude, no retraining"),
    Method("rare_gems", "Rare Gems", "baselines", "per_sparsity", RareGemsSettings,
           "prunelimit.baselines.rare_gems:run_rare_gems",
           "[code] ksreenivasan/pruning_is_enough hc_iter + finetune; exact per-step counts [ours]"),
    Method("imp", "IMP", "baselines", "trajectory", ImpSettings, "prunelimit.baselines.imp:run_imp",
           "[code] facebookresearch/open_lth lottery + sparse_global (rewinding); round schedule [ours]"),
    Method("smart_ratio", "Smart-Ratio", "baselines", "per_sparsity", SmartRatioSettings,
           "prunelimit.baselines:run_smart_ratio",
           "[code] JingtongSu/sanity-checking-pruning SmartRatio.py; water-filling overflow [ours]"),
    Method("mp", "MP", "oneshot", "oneshot", MagnitudeSettings, _ONESHOT,
           "[paper] global magnitude pruning, no update (on the L1 model: LOMP)"),
    Method("wf", "WF", "oneshot", "oneshot", WoodFisherSettings, _ONESHOT,
           "[paper] Singh & Alistarh, NeurIPS 2020: OBS saliency and update under a Woodbury Fisher inverse"),
    Method("cbs", "CBS", "oneshot", "oneshot", CbsSettings, _ONESHOT,
           "[paper] Yu et al., ICML 2022: greedy swaps on the OBS objective, then the joint OBS update"),
    Method("chita", "CHITA", "oneshot", "oneshot", ChitaSettings, _ONESHOT,
           "[paper] Benbaki et al., ICML 2023: IHT with backsolve on the l0-constrained least squares"),
)}


def method(name: str) -> Method:
    """The registry entry ``name``; an unknown name is one error listing the known ones."""
    if name not in REGISTRY:
        raise PrunelimitError(f"unknown pruning method {name!r}; known: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names(comparison: str, runs: str | None = None) -> list[str]:
    """The registered methods of ``comparison`` (and run as ``runs``), in registry order."""
    if comparison not in COMPARISONS:
        raise PrunelimitError(f"unknown comparison {comparison!r}; known: {', '.join(COMPARISONS)}")
    return [m.name for m in REGISTRY.values() if m.comparison == comparison and (runs is None or m.runs == runs)]


def typed_settings(comparison: str, section: dict) -> dict[str, Section]:
    """Each registered method's settings of ``comparison`` that has a block, typed from the validated
    config ``section`` (``baselines`` or ``oneshot``; the schema gives every block its defaults)."""
    return {name: method(name).settings.from_section(section[name])
            for name in names(comparison) if method(name).settings is not None and name in section}
