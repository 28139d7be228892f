"""The "how to add" of docs/architecture.md, done: a dummy pruning method, dataset, model, figure and table added
to a temporary copy of the workflow, each through the files the guide names and no others, and `snakemake -n`
plans their jobs. Also: every compute script has the one short shape the guide describes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pipeline_utils import ROOT, SNAKEMAKE

METHOD_SETTINGS = '''

@dataclass(frozen=True)
class ShuffleSettings(TrainingSettings):
    keep_ratio: float


REGISTRY["shuffle"] = Method("shuffle", "Shuffle", "baselines", "per_sparsity", ShuffleSettings,
                             "prunelimit.baselines.shuffle:run_shuffle", "[test] a dummy")
'''
METHOD_CODE = '''def run_shuffle(spec, data, sparsity, seed, *, progress=False, keep_ratio=0.5):
    raise NotImplementedError  # planned, never run
'''
DATASET_ENTRY = '''
REGISTRY["tiny"] = Dataset("tiny", (1, 8, 8), 10, "bundled", "prunelimit.data:make_digits")
NAMES = tuple(REGISTRY)
'''
MODEL_ENTRY = '''

def wide_mlp(in_shape: InShape, num_classes: int, width: float = 2.0) -> Node:
    return _mlp(in_shape, num_classes, (scaled_channels(24, width),))


ARCHITECTURES["wide_mlp"] = wide_mlp
'''
NEW_FIGURE_CODE = """

def plot_dummy(predictions, paths):
    raise NotImplementedError  # planned, never run


def draw_dummy(inputs, params, outputs):
    return plot_dummy(by_task(params.tasks, inputs.prediction, load_json), outputs)
"""
NEW_FIGURE_ENTRY = """FIGURES["dummy"] = figure(
    "dummy",
    "[test] no paper figure",
    "prunelimit.figures.theory_vs_actual:draw_dummy",
    "A dummy figure of every task's predicted sparsity (fraction removed).",
    {"tasks": TASKS},
    prediction=PREDICTIONS,
)


"""
NEW_TABLE_CODE = """

def dummy_from_files(inputs, params):
    raise NotImplementedError  # planned, never run
"""
NEW_TABLE_ENTRY = """TABLES["dummy"] = table(
    "dummy",
    "[test] no paper table",
    "prunelimit.table_inputs:dummy_from_files",
    "A dummy table of every task's predicted sparsity (fraction removed).",
    {"tasks": TASKS},
    prediction=PREDICTIONS,
)


"""


def test_a_method_a_dataset_a_model_a_figure_and_a_table_are_one_entry_each(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("Snakefile", "config.yaml", "src", "scripts", "workflow", "envs"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(ROOT / name, copy / name)
    touched = set()

    def append(relative: str, text: str) -> None:
        path = copy / relative
        path.write_text((path.read_text() if path.exists() else "") + text)
        touched.add(relative)

    # the method: its registry entry, its implementation, its settings block in the schema (3 files)
    append("src/prunelimit/methods.py", METHOD_SETTINGS)
    append("src/prunelimit/baselines/shuffle.py", METHOD_CODE)
    schema_path = copy / "workflow/schemas/config.schema.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["properties"]["baselines"]["properties"]["shuffle"] = {
        "type": "object", "default": {}, "additionalProperties": False,
        "properties": {"keep_ratio": {"type": "number", "default": 0.5}}}
    # the dataset: its registry entry (the digits builder fits) and its option block (2 files)
    append("src/prunelimit/datasets.py", DATASET_ENTRY)
    schema["properties"]["datasets"]["properties"]["tiny"] = {"type": "object", "default": {}}
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False, allow_unicode=True))
    touched.add("workflow/schemas/config.schema.yaml")
    assert len(touched - {"src/prunelimit/datasets.py"}) == 3 and len(touched - {
        "src/prunelimit/methods.py", "src/prunelimit/baselines/shuffle.py"}) == 2
    # the model: its description and registry entry (1 file), from which both the count and the module come
    append("src/prunelimit/architectures.py", MODEL_ENTRY)
    # the figure: its plot_/draw_ functions in a figures module and its FIGURES entry (2 files)
    append("src/prunelimit/figures/theory_vs_actual.py", NEW_FIGURE_CODE)
    rules = copy / "workflow/rules/report.smk"
    loop = "for _name, _figure in FIGURES.items():"
    rules.write_text(rules.read_text().replace(loop, NEW_FIGURE_ENTRY + loop, 1))
    # the table: its <name>_from_files entry (its builder may be an existing one) and its TABLES entry (2 files)
    append("src/prunelimit/table_inputs.py", NEW_TABLE_CODE)
    loop = "for _name, _table in TABLES.items():"
    rules.write_text(rules.read_text().replace(loop, NEW_TABLE_ENTRY + loop, 1))

    # a user's preset: a task on the new dataset, compared with the new method
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["tiny"] = {}
    config["tasks"]["mlp_tiny"] = {"model": "wide_mlp", "dataset": "tiny", "model_args": {"width": 0.5},
                                   "l1": 1.0e-4}
    config["baselines"].update(tasks=["mlp_tiny"], methods=["lomp", "shuffle"])
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    env = {"PATH": f"{Path(SNAKEMAKE).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([SNAKEMAKE, "-n"], cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    dry = proc.stdout + proc.stderr
    assert proc.returncode == 0, dry[-3000:]
    sparsities = len(config["baselines"]["sparsities"]) * len(config["baselines"]["seeds"])
    assert dry.count("wildcards: method=shuffle, task=mlp_tiny") == sparsities  # a job per sparsity and seed
    assert "results/mini/data/tiny.npz" in dry and "results/mini/train/mlp_tiny/l1/model.pt" in dry
    assert "rule fig_dummy:" in dry and "results/mini/figures/dummy.pdf" in dry
    assert "rule table_dummy:" in dry and "results/mini/tables/dummy.html" in dry
    counted = subprocess.run([sys.executable, "-c", BUILD_WIDE_MLP], cwd=copy, capture_output=True, text=True,
                             timeout=300, env={**env, "PYTHONPATH": str(copy / "src")})
    # 64 inputs → 12 hidden (24 × width 0.5) → 10 classes, with biases: the count and the module agree with it
    assert counted.stdout.split() == [str(64 * 12 + 12 + 12 * 10 + 10)] * 2, counted.stderr[-2000:]


BUILD_WIDE_MLP = """
from prunelimit.entries import resolve
assert resolve("prunelimit.figures.theory_vs_actual:draw_dummy").__name__ == "draw_dummy"
assert resolve("prunelimit.table_inputs:dummy_from_files").__name__ == "dummy_from_files"
from prunelimit.architectures import parameter_count
from prunelimit.models import build_model, count_parameters
print(parameter_count("wide_mlp", (1, 8, 8), 10, width=0.5).all)
print(count_parameters(build_model("wide_mlp", (1, 8, 8), 10, width=0.5)))
"""


# a script that is no compute rule's: the tables and figures read results, check_slurm checks a cluster
NOT_COMPUTE = {"figure.py", "table.py", "check_slurm.py"}
ENTRY_MODULES = {"prunelimit.stages", "prunelimit.pruning_stages", "prunelimit.data"}


def test_every_compute_script_calls_one_library_entry():
    """scripts/<rule>.py: inside rule_context, one call of one entry of the stage modules, then its log."""
    import ast

    scripts = [p for p in sorted((ROOT / "scripts").glob("*.py")) if p.name not in NOT_COMPUTE]
    assert len(scripts) >= 10
    for path in scripts:
        tree = ast.parse(path.read_text())
        imported = {(node.module, alias.name) for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    for alias in node.names}
        entries = imported - {("prunelimit.runlog", "rule_context")}
        assert len(entries) == 1 and next(iter(entries))[0] in ENTRY_MODULES, (path.name, entries)
        entry = next(iter(entries))[1]
        calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
                 and isinstance(node.func, ast.Name) and node.func.id == entry]
        assert len(calls) == 1, path.name
        body = [node for node in tree.body if not isinstance(node, (ast.Expr, ast.ImportFrom))]
        assert len(body) == 1 and isinstance(body[0], ast.With), path.name  # everything inside rule_context
