"""Typed views of the validated config's sections: what the rules hand to the library.

The schema (workflow/schemas/config.schema.yaml) is the one place for defaults: validation fills
every optional key it gives a default (prunelimit.config.validate_config), so each dataclass here
is built from a complete section and none of them repeats a default. Built once per workflow parse
(workflow/rules/common.smk) and passed to the scripts as rule params.
Torch-free: the workflow and the figure jobs import it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


class _Section:
    """A frozen dataclass built from one config section (unknown keys are a schema error upstream)."""

    @classmethod
    def from_section(cls, section: dict):
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(section))
        if missing:
            raise ValueError(f"{cls.__name__}: section lacks {missing}; validate the config first (the schema "
                             f"supplies every default)")
        # lists become tuples (hashable, immutable); numbers keep their YAML type, so what a job writes is unchanged
        return cls(**{k: tuple(section[k]) if isinstance(section[k], list) else section[k] for k in names})


@dataclass(frozen=True)
class HessianSettings(_Section):
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
class TheorySettings(_Section):
    epsilon: float | None
    epsilon_data: str
    epsilon_partitions: int  # batch partitions of ε's band (0 = no band)
    eta: float
    zero_row_threshold: float
    row_levels: int
    scales: tuple[float, ...]  # weight scale factors of the magnitude-scaling experiment
    scaling_grid: int


@dataclass(frozen=True)
class PruneSettings(_Section):
    grid: int
    tolerances: tuple[float, ...]
    train_every: int


@dataclass(frozen=True)
class IterativeSettings(_Section):
    tasks: tuple[str, ...]
    rounds: int
    retrain_epochs: int
    l2: float


@dataclass(frozen=True)
class ImpSettings(_Section):
    fraction_per_round: float
    rewind_epoch: int


@dataclass(frozen=True)
class RareGemsSettings(_Section):
    prune_every: int
    score_l2: float
    score_lr: float


@dataclass(frozen=True)
class SmartRatioSettings(_Section):
    classifier_ratio: float


@dataclass(frozen=True)
class BaselineSettings(_Section):
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    sparsities: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int | None  # None: each task's own epochs
    imp: ImpSettings
    rare_gems: RareGemsSettings
    smart_ratio: SmartRatioSettings

    @classmethod
    def from_section(cls, section: dict) -> BaselineSettings:
        return super().from_section({**section, "imp": ImpSettings.from_section(section["imp"]),
                                     "rare_gems": RareGemsSettings.from_section(section["rare_gems"]),
                                     "smart_ratio": SmartRatioSettings.from_section(section["smart_ratio"])})


@dataclass(frozen=True)
class RegimeSettings(_Section):
    tasks: tuple[str, ...]
    l1_multipliers: tuple[float, ...]


@dataclass(frozen=True)
class TvDistanceSettings(_Section):
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
    regime: RegimeSettings
    tv_distance: TvDistanceSettings

    @classmethod
    def from_config(cls, config: dict) -> Settings:
        return cls(config=config, theory=TheorySettings.from_section(config["theory"]),
                   prune=PruneSettings.from_section(config["prune"]),
                   iterative=IterativeSettings.from_section(config["iterative"]),
                   baselines=BaselineSettings.from_section(config["baselines"]),
                   regime=RegimeSettings.from_section(config["regime"]),
                   tv_distance=TvDistanceSettings.from_section(config["tv_distance"]))

    def hessian(self, task: str) -> HessianSettings:
        """The spectrum settings of ``task``: the hessian section with the task's overrides."""
        return HessianSettings.for_task(self.config, task)
