# Shared set-up: config validation, names, wildcard constraints and input functions.
import sys
import textwrap
from pathlib import Path

from snakemake.exceptions import WorkflowError

sys.path.insert(
    0, str(Path(workflow.basedir) / "src")
)  # the library, also when not pip-installed
# Parsing imports no torch (seconds per snakemake call): parameter counts come from the torch-free
# descriptions of prunelimit.architectures, which models.build_model also builds the modules from.
from prunelimit.architectures import dataset_shape, parameter_count
from prunelimit.config import (
    check_task_references,
    main_study_tasks,
    regime_multiplier,
    regime_variant,
    task_spec,
    validate_config,
)
from prunelimit.errors import PrunelimitError
from prunelimit.settings import Settings

try:
    validate_config(
        config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml"
    )
    check_task_references(config)
except (PrunelimitError, ValueError) as _err:
    # one line naming the key; snakemake's validate() would follow it with the whole schema
    raise WorkflowError(str(_err)) from None
# the analysis sections, typed, from the validated config (schema defaults filled in): the rules'
# params hand these to the scripts
SETTINGS = Settings.from_config(config)

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


def hessian_dim(task):
    """D of the task's Hessian (prunable weights or all parameters, as config hessian.params says)."""
    entry = config["tasks"][task]
    in_shape, classes = dataset_shape(
        entry["dataset"], config["datasets"][entry["dataset"]]
    )
    counts = parameter_count(entry["model"], in_shape, classes, **entry["model_args"])
    all_params = SETTINGS.hessian(task).params == "all"
    return counts.all if all_params else counts.prunable


# Tasks small enough (D ≤ hessian.exact_max_params) for the dense exact spectrum.
EXACT_TASKS = [
    t for t in TASKS if hessian_dim(t) <= config["hessian"]["exact_max_params"]
]


def baseline_spec(task):
    """The task's dense recipe, trained for baselines.epochs when set (IMP retrains every round)."""
    spec = task_spec(config, task, "dense")
    if SETTINGS.baselines.epochs:
        spec["train"]["epochs"] = int(SETTINGS.baselines.epochs)
    return spec


def imp_takes_over_dense(task, seed):
    """IMP's dense run of this seed is the train rule's dense model when both are one recipe and
    seed (baselines.epochs null, the task's training seed): IMP then takes that model over instead of
    training it again (prunelimit.baselines.imp.run_imp, tested bit for bit)."""
    if "dense" not in VARIANTS:
        return False
    dense = task_spec(config, task, "dense")["train"]
    return {**baseline_spec(task)["train"], "seed": int(seed)} == dense


def dataset_of(wildcards):
    return f"{RESULTS}/data/{config['tasks'][wildcards.task]['dataset']}.npz"


def trained(task, variant=THEORY_VARIANT):
    base = f"{RESULTS}/train/{task}/{variant}"
    return {"model": f"{base}/model.pt", "metrics": f"{base}/metrics.json"}


# The claim test over training seeds (workflow/rules/claim.smk): each main-study task's L1 model
# trained with every seed of claim_seeds. The seed equal to the task's own training seed is the main
# study's model; the others are the train_reseeded rule's l1_seed<seed> models (shared with tv_distance).
CLAIM_SEEDS = [int(s) for s in config["claim_seeds"]] if THEORY_VARIANT == "l1" else []
SEED_DIR = f"{RESULTS}/seeds/{{task}}/seed{{seed}}"


def task_seed(task):
    """The training seed of the task's main-study model."""
    return int(task_spec(config, task, THEORY_VARIANT)["train"]["seed"])


def claim_seeds(task):
    """The claim test's training seeds of ``task``, its own first (the main study's model)."""
    own = task_seed(task)
    return [own] + [s for s in CLAIM_SEEDS if s != own]


# per seed, a claim-test file: the main study's where the seed is the task's own
MAIN_STUDY_CLAIM_FILES = {
    "prediction.json": "theory/{task}/prediction.json",
    "actual.json": "prune/{task}/actual.json",
    "curve.csv": "prune/{task}/curve.csv",
    "metrics.json": "train/{task}/l1/metrics.json",
}


def claim_file(task, seed, name):
    if seed == task_seed(task):
        return f"{RESULTS}/{MAIN_STUDY_CLAIM_FILES[name].format(task=task)}"
    if name == "metrics.json":
        return f"{RESULTS}/train/{task}/l1_seed{seed}/metrics.json"
    return f"{RESULTS}/seeds/{task}/seed{seed}/{name}"


def claim_files(name, tasks=TASKS):
    """One file per (task, seed) of the claim test, tasks outer, the task's own seed first."""
    return [claim_file(t, s, name) for t in tasks for s in claim_seeds(t)]


def oneshot_model(w):
    """The trained model a one-shot job (oneshot.smk) prunes: the train rule's for the task's own seed,
    else the reseeded one (train_reseeded: l1_seed<n>, dense_seed<n>)."""
    seed = int(w.seed)
    variant = w.start if seed == task_seed(w.task) else f"{w.start}_seed{seed}"
    return trained(w.task, variant)


def claim_seed_params(tasks=TASKS):
    """The (task, seed) of each file of :func:`claim_files`, as two parallel lists."""
    pairs = [(t, s) for t in tasks for s in claim_seeds(t)]
    return {"tasks": [t for t, _ in pairs], "seeds": [s for _, s in pairs]}


# The regime map (workflow/rules/regime.smk): tasks, their l1x<m> training variants, files
REGIME = SETTINGS.regime
REGIME_TASKS = list(REGIME.tasks)
REGIME_POINTS = [regime_variant(m) for m in REGIME.l1_multipliers]
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


# A map point whose model is a main-study model (m = 0: dense, m = 1: l1) takes these results from
# the main study, which computes them by the same rules and settings, instead of computing them twice.
MAIN_STUDY_RESULTS = {
    ("l1", "prediction.json"): "theory/{task}/prediction.json",
    ("l1", "actual.json"): "prune/{task}/actual.json",
    ("dense", "actual.json"): "prune/{task}/actual_dense.json",
}


def regime_file(task, point, name):
    # regime_model_variant names dense / l1 only for configured variants, so the main study has them
    shared = MAIN_STUDY_RESULTS.get((regime_model_variant(point), name))
    if task in TASKS and shared:
        return f"{RESULTS}/{shared.format(task=task)}"
    return f"{RESULTS}/regime/{task}/{point}/{name}"


def regime_files(name, kind="regime"):
    """One file per (task, point) of the map, tasks outer, points in config order."""
    if kind == "train":
        return [
            f"{RESULTS}/train/{t}/{regime_model_variant(p)}/{name}"
            for t in REGIME_TASKS
            for p in REGIME_POINTS
        ]
    return [regime_file(t, p, name) for t in REGIME_TASKS for p in REGIME_POINTS]


# The sections whose outputs are built only for the tasks they list
ITERATIVE_TASKS = list(SETTINGS.iterative.tasks)
BASELINE_TASKS = list(SETTINGS.baselines.tasks)
TV = SETTINGS.tv_distance


def per_task(pattern, tasks=TASKS):
    """results/<preset>/<pattern> for each task, e.g. per_task("prune/{task}/curve.csv")."""
    return expand(f"{RESULTS}/{pattern}", task=tasks)


# ---------------------------------------------------------------------------------------------
# Tables (TABLES in report.smk): each table_<name> rule writes .csv, .md, booktabs .tex and the HTML
# page the report shows inline (a .csv there is a download only); the figures are FIGURES, beside them.
# ---------------------------------------------------------------------------------------------

# a table whose section lists no task is not built (the tables themselves: TABLES in report.smk)
TABLE_TASKS = {
    "tv_distance": TV.tasks,
    "lomp_vs_baselines": BASELINE_TASKS,
    "regime_map": REGIME_TASKS,
    "lomp_vs_sota": list(SETTINGS.oneshot.tasks),
}


def table_paths(name):
    return {
        ext: f"{RESULTS}/tables/{name}.{ext}" for ext in ("csv", "md", "tex", "html")
    }


def table(label, paper, entry, caption, params, **inputs):
    """A table of report.smk's TABLES: its labels in the report (and the title of its HTML page), its
    entry ("prunelimit.table_inputs:<name>_from_files", which scripts/table.py calls with the rule's input
    and params and writes the table it returns), its caption (reStructuredText, dedented; the report shows
    it through workflow/report/table.rst), the params its entry reads and its inputs."""
    return {
        "input": inputs,
        "params": params,
        "entry": entry,
        "caption": textwrap.dedent(caption).strip(),
        "labels": {"table": label, "paper": paper},
        "title": f"{label} (paper: {paper})",
    }


# a figure whose section lists no task is not built (the figures themselves: FIGURES in report.smk)
FIGURE_TASKS = {
    "iterative_threshold": ITERATIVE_TASKS,
    "l2_vs_rare_gems": ITERATIVE_TASKS,
    "regime_map": REGIME_TASKS,
    "lomp_vs_sota": list(SETTINGS.oneshot.tasks),
}


def figure(label, paper, entry, caption, params, **inputs):
    """A figure of report.smk's FIGURES: its labels in the report, its draw function ``entry``
    ("prunelimit.figures.<module>:draw_<name>", which scripts/figure.py calls with the rule's input,
    params and output), its caption (reStructuredText, dedented; the report shows it through
    workflow/report/figure.rst), the params its draw function reads and its inputs."""
    return {
        "input": inputs,
        "params": params,
        "entry": entry,
        "caption": textwrap.dedent(caption).strip(),
        "labels": {"figure": label, "paper": paper},
    }


# The preset's final targets: called only by the Snakefile's rules all, figures and tables, after every
# rule file is included (FIGURES and TABLES are report.smk's).
def all_figure_paths():
    """One PDF + PNG pair per figure of report.smk's FIGURES that the preset builds."""
    names = [name for name in FIGURES if FIGURE_TASKS.get(name, True)]
    return expand(f"{RESULTS}/figures/{{name}}.{{ext}}", name=names, ext=["pdf", "png"])


def all_table_paths():
    """The four files of each table of report.smk's TABLES that the preset builds."""
    names = [name for name in TABLES if TABLE_TASKS.get(name, True)]
    return [path for name in names for path in table_paths(name).values()]


def get_final_output():
    """Every final target of the preset (the Snakefile's default target asks for these): the
    stages' results, every table, every figure."""
    theory = ["prediction.json", "magnitude_scaling.json"]
    prune = ["curve.csv", "actual.json"]
    if "dense" in VARIANTS and THEORY_VARIANT != "dense":  # the dense-vs-L1 curves
        prune += ["curve_dense.csv", "actual_dense.json"]
    return [
        *expand(
            f"{RESULTS}/train/{{task}}/{{variant}}/model.pt",
            task=TASKS,
            variant=VARIANTS,
        ),
        *per_task("hessian/{task}/hessian_rows.npz"),
        *per_task("hessian/{task}/slq.npz"),
        *per_task("hessian/{task}/exact.npz", EXACT_TASKS),
        *expand(f"{RESULTS}/theory/{{task}}/{{name}}", task=TASKS, name=theory),
        *expand(f"{RESULTS}/prune/{{task}}/{{name}}", task=TASKS, name=prune),
        *per_task("prune/{task}/iterative.csv", ITERATIVE_TASKS),
        *claim_files("prediction.json"),
        *claim_files("actual.json"),
        *all_table_paths(),
        *all_figure_paths(),
    ]
