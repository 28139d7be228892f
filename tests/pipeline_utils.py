"""Running the Snakemake pipeline from tests, in a scratch directory so results/ stays clean."""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from prunelimit.config import validate_config
from prunelimit.settings import HessianSettings, TheorySettings

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


@functools.cache
def load_benchmark(name: str):
    """benchmarks/<name>.py as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# A sitecustomize that makes `import torch` fail loudly (tests/no_torch/sitecustomize.py).
NO_TORCH = ROOT / "tests" / "no_torch"
TORCH_REFUSED = "no_torch: refused import of"


def snakemake_command(workdir: Path, *args: str, configfile: Path | None = None,
                      refuse_torch: bool = False) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run this repository's workflow in ``workdir``; with
    ``refuse_torch`` the snakemake process cannot import torch (for dry runs: jobs would need it)."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile or ROOT / "config.yaml"), *args]
    pythonpath = [str(NO_TORCH)] if refuse_torch else []
    return cmd, {**os.environ, "PYTHONPATH": os.pathsep.join([*pythonpath, str(ROOT / "src")])}


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: float = 1500,
              check: bool = True, refuse_torch: bool = False) -> subprocess.CompletedProcess:
    cmd, env = snakemake_command(workdir, *args, configfile=configfile, refuse_torch=refuse_torch)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def load_config(name: str = "config.yaml") -> dict:
    """A preset as the workflow sees it: validated, with the schema's defaults filled in."""
    config = yaml.safe_load((ROOT / name).read_text())
    validate_config(config)
    return config


def hessian_with(overrides: dict) -> HessianSettings:
    """The mini preset's spectrum settings with ``overrides`` (what a rule would hand the library)."""
    return HessianSettings.from_section({**load_config()["hessian"], **overrides})


def theory_with(overrides: dict) -> TheorySettings:
    """The mini preset's theory settings with ``overrides``."""
    return TheorySettings.from_section({**load_config()["theory"], **overrides})


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# Prints, as JSON, what the tests check of each rule of the parsed workflow (rules made in a loop or by
# `use rule` included). Snakemake's API has no public accessor for the parsed rules: WorkflowApi's
# _workflow is the object its own lint and list_rules read.
_LIST_RULES = """
import json, sys, tempfile
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

root, configfile = Path(sys.argv[1]), Path(sys.argv[2])
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    workflow = api.workflow(resource_settings=ResourceSettings(), snakefile=root / "Snakefile",
                            config_settings=ConfigSettings(configfiles=[configfile]),
                            workdir=Path(tempfile.mkdtemp()))._workflow
    beside = lambda rule, path: str((Path(rule.snakefile).parent / path).resolve()) if path else None
    # a script path may name params (the figure loop's): formatted as Snakemake does when the job runs
    script = lambda rule: rule.script.format(params=rule.params) if rule.script else None
    rules = [{"name": rule.name, "conda": beside(rule, rule.conda_env), "script": beside(rule, script(rule)),
              "gpu": rule.resources.get("gpu").value, "log": bool(rule.log), "benchmark": rule.benchmark is not None,
              "entry": rule.params.get("entry"), "caption": rule.params.get("caption")}
             for rule in workflow.rules]
print(json.dumps(rules))
"""


@functools.cache
def workflow_rules(configfile: str = "config.yaml") -> list[dict]:
    """Every rule of the workflow as Snakemake parses it with ``configfile``: name, conda environment
    and script (absolute paths, or None), its gpu resource (None if it declares none), whether it has
    a log and a benchmark, and a figure rule's ``entry`` and ``caption`` params (None elsewhere). Parsed in a
    subprocess: loading a workflow sets up Snakemake's logging. Parsed once per configfile and session
    (several test files ask; each parse costs seconds of the cores the mini run is using), a fresh copy each time."""
    return copy.deepcopy(_parsed_rules(configfile))


@functools.cache
def _parsed_rules(configfile: str) -> list[dict]:
    proc = subprocess.run([sys.executable, "-c", _LIST_RULES, str(ROOT), str(ROOT / configfile)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    if proc.returncode != 0:
        raise AssertionError(f"could not parse the workflow:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.splitlines()[-1])
