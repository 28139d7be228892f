"""Typed views of the validated config's sections: what the rules hand to the library.

The schema (workflow/schemas/config.schema.yaml) is the one place for defaults: validation fills
every optional key it gives a default (prunelimit.config.validate_config), so each dataclass here
is built from a complete section and none of them repeats a default. Built once per workflow parse
(workflow/rules/common.smk) and passed to the scripts as rule params.
Torch-free: the workflow and the figure jobs import it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .methods import typed_settings
from .sections import Section


@dataclass(frozen=True)
class HessianSettings(Section):
    """The `hessian` section merged with a task's overrides: the spectrum estimate of one model."""

    params: str  # "prunable" | "all": the parameters the Hessian is taken over
    n_runs: int
    n_iter: int
    max_iter: int
    tol: float
    stable_doublings: int
    seed: int
    chunk_size: int
    n_bins: int
    sigma2: float
    exact_max_params: int
    basis_device: str  # "auto" | "cpu" | "same": where SLQ's Lanczos basis lives (prunelimit.lanczos.basis_placement)

    @classmethod
    def for_task(cls, config: dict, task: str) -> HessianSettings:
        return cls.from_section({**config["hessian"], **config["tasks"][task]["hessian"]})


@dataclass(frozen=True)
class TheorySettings(Section):
    epsilon: float | None
    epsilon_data: str
    epsilon_partitions: int  # batch partitions of ε's band (0 = no band)
    eta: float
    zero_row_threshold: float
    row_levels: int
    scales: tuple[float, ...]  # weight scale factors of the magnitude-scaling experiment
    scaling_grid: int


@dataclass(frozen=True)
class ThresholdSettings(Section):
    """How an actual pruning threshold is measured (prunelimit.prune.sweep_and_threshold): the sweep's grid of
    sparsities i/grid and the accuracy drops the threshold is also reported at. One object for every caller: the
    sweep rule (the prune section), the magnitude-scaling experiment (the prune section on theory.scaling_grid,
    :meth:`with_grid`) and ``prunelimit predict --verify`` (the prune section of ``--config``, ``--grid`` over it)."""

    grid: int
    tolerances: tuple[float, ...]

    def with_grid(self, grid: int) -> ThresholdSettings:
        """The same criteria on another grid."""
        return ThresholdSettings(grid=int(grid), tolerances=self.tolerances)


@dataclass(frozen=True)
class PruneSettings(ThresholdSettings):
    train_every: int


@dataclass(frozen=True)
class IterativeSettings(Section):
    tasks: tuple[str, ...]
    rounds: int
    retrain_epochs: int
    l2: float


@dataclass(frozen=True)
class BaselineSettings(Section):
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int | None  # None: each task's own epochs
    options: dict = field(hash=False)  # method name → its typed settings (prunelimit.methods registry)

    @classmethod
    def from_section(cls, section: dict) -> BaselineSettings:
        return super().from_section({**section, "options": typed_settings("baselines", section)})

    def of(self, method: str):
        """The typed settings of ``method`` (None where it has no block: LOMP)."""
        return self.options.get(method)


@dataclass(frozen=True)
class OneShotSettings(Section):
    """LOMP against the optimal-brain-surgeon family: which models, methods, sparsities, and the Fisher's N and
    blocks (the section's, or a task's override)."""

    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    starts: tuple[str, ...]  # "dense" | "l1": the trained models each method prunes
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    samples: int  # N per-sample gradients
    block_size: int
    overrides: dict = field(hash=False)  # task → {samples, block_size}
    options: dict = field(hash=False)  # method name → its typed settings (prunelimit.methods registry)

    @classmethod
    def from_section(cls, section: dict) -> OneShotSettings:
        return super().from_section({**section, "options": typed_settings("oneshot", section)})

    def of(self, method: str):
        return self.options[method]

    def fisher(self, task: str) -> dict:
        """N and the block size of ``task``'s empirical Fisher: the section's, with the task's override."""
        return {"samples": int(self.samples), "block_size": int(self.block_size), **self.overrides.get(task, {})}


@dataclass(frozen=True)
class RegimeSettings(Section):
    tasks: tuple[str, ...]
    l1_multipliers: tuple[float, ...]


@dataclass(frozen=True)
class TvDistanceSettings(Section):
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    bins: int


@dataclass(frozen=True)
class Settings:
    """Every analysis section of one validated config, typed."""

    config: dict
    theory: TheorySettings
    prune: PruneSettings
    iterative: IterativeSettings
    baselines: BaselineSettings
    oneshot: OneShotSettings
    regime: RegimeSettings
    tv_distance: TvDistanceSettings

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        return cls(config=config, theory=TheorySettings.from_section(config["theory"]),
                   prune=PruneSettings.from_section(config["prune"]),
                   iterative=IterativeSettings.from_section(config["iterative"]),
                   baselines=BaselineSettings.from_section(config["baselines"]),
                   oneshot=OneShotSettings.from_section(config["oneshot"]),
                   regime=RegimeSettings.from_section(config["regime"]),
                   tv_distance=TvDistanceSettings.from_section(config["tv_distance"]))

    def hessian(self, task: str) -> HessianSettings:
        """The spectrum settings of ``task``: the hessian section with the task's overrides."""
        return HessianSettings.for_task(self.config, task)
