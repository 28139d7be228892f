"""The "how to add" of docs/architecture.md, done: a dummy pruning method and a dummy dataset registered in a
temporary copy of the workflow, each through the files the guide names and no others, and `snakemake -n`
plans their jobs."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from pipeline_utils import ROOT, SNAKEMAKE

METHOD_SETTINGS = '''

@dataclass(frozen=True)
class ShuffleSettings(Section):
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


def test_a_method_and_a_dataset_are_one_registry_entry_each(tmp_path):
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

    # a user's preset: a task on the new dataset, compared with the new method
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["datasets"]["tiny"] = {}
    config["tasks"]["mlp_tiny"] = {"model": "mlp", "dataset": "tiny", "l1": 1.0e-4}
    config["baselines"].update(tasks=["mlp_tiny"], methods=["lomp", "shuffle"])
    (copy / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    env = {"PATH": f"{Path(SNAKEMAKE).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([SNAKEMAKE, "-n"], cwd=copy, capture_output=True, text=True, timeout=300, env=env)
    dry = proc.stdout + proc.stderr
    assert proc.returncode == 0, dry[-3000:]
    sparsities = len(config["baselines"]["sparsities"]) * len(config["baselines"]["seeds"])
    assert dry.count("wildcards: method=shuffle, task=mlp_tiny") == sparsities  # a job per sparsity and seed
    assert "results/mini/data/tiny.npz" in dry and "results/mini/train/mlp_tiny/l1/model.pt" in dry
