"""The conda environments (envs/*.yaml): pinned like the lock, and enough for the rules that use them.

No conda channel is reachable from this machine, so `--sdm conda` itself cannot run here. These tests
check what decides whether it would work: each environment pins the locked versions, and every
third-party package that a rule's script can import (itself or through prunelimit, at any depth,
including imports inside functions) is in the environment that rule names. A third test runs rules
under `--sdm conda` with a stand-in for the conda command (tests/fakeconda).
"""

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline_utils import load_config, workflow_rules

ROOT = Path(__file__).resolve().parents[1]
ENVS = ROOT / "envs"
PACKAGE = ROOT / "src" / "prunelimit"

# The import name of each distribution the environments list (where it differs from the pip name).
IMPORT_NAME = {"scikit-learn": "sklearn", "pillow": "PIL", "pyyaml": "yaml", "jinja2": "jinja2"}
# Always present where a Snakemake `script:` runs: the preamble puts Snakemake's own path on sys.path.
PROVIDED = {"prunelimit", "snakemake"}


def lock_pins():
    pins = {}
    for line in (ENVS / "requirements.lock").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def env_pip(env_file):
    env = yaml.safe_load((ENVS / env_file).read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict)), env


def env_import_names(env_file):
    pip, _ = env_pip(env_file)
    names = {req.split("==")[0].lower() for req in pip}
    return {IMPORT_NAME.get(name, name.replace("-", "_")) for name in names}


def rules_with_env_and_script():
    """(rule, env file, script path) for every rule of the workflow that runs a script."""
    return [(rule["name"], rule["conda"] and Path(rule["conda"]).name, Path(rule["script"]))
            for rule in workflow_rules() if rule["script"]]


def imported_modules(path):
    """Every module an import statement in the file names, at module level or inside functions."""
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: inside prunelimit
            package = path.relative_to(ROOT / "src").with_suffix("").parts[:-node.level]
            modules.add(".".join([*package, *(node.module.split(".") if node.module else [])]))
    return modules


def entry_modules(rule):
    """The modules a rule's script imports by name, not by an import statement: a figure rule's draw function
    (its ``entry`` param, "prunelimit.figures.<module>:draw_<name>", which scripts/figure.py resolves) or a table
    rule's entry ("prunelimit.table_inputs:<name>_from_files", which scripts/table.py resolves)."""
    entry = next(r["entry"] for r in workflow_rules() if r["name"] == rule)
    return [entry.partition(":")[0]] if entry else []


def third_party_imports(script, modules=()):
    """Top-level third-party packages reachable from a script through prunelimit's modules, and from the
    ``modules`` the script imports by name (:func:`entry_modules`)."""
    seen, queue, third_party = set(), [script], {}

    def follow(module, importer):
        top = module.partition(".")[0]
        if top == "prunelimit":
            parts = module.split(".")[1:]
            for candidate in (PACKAGE.joinpath(*parts).with_suffix(".py"), PACKAGE.joinpath(*parts, "__init__.py")):
                if candidate.is_file():
                    queue.append(candidate)
            for depth in range(len(parts)):  # `from prunelimit.x.y import z` also runs the packages' __init__.py
                queue.append(PACKAGE.joinpath(*parts[:depth], "__init__.py"))
        elif top not in sys.stdlib_module_names and top not in PROVIDED:
            third_party.setdefault(top, importer.relative_to(ROOT).as_posix())

    for module in modules:
        follow(module, script)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            follow(module, path)
    return third_party


def test_conda_envs_pin_the_locked_versions():
    lock = lock_pins()
    for env_file in ("torch.yaml", "plot.yaml"):
        pip, env = env_pip(env_file)
        pinned = dict(req.split("==") for req in pip)
        assert pinned, env_file
        for name, version in pinned.items():
            assert lock[name.lower().replace("_", "-")] == version, (env_file, name)
        # Snakemake unpickles its job object inside the environment: same Python as the lock's.
        assert any(str(d).startswith("python=3.11") for d in env["dependencies"]), env_file
    assert "torch==2.13.0" in env_pip("torch.yaml")[0]


def test_every_rule_with_a_script_names_an_existing_environment():
    rules = rules_with_env_and_script()
    assert len(rules) >= 20  # the parser found the workflow's rules
    for name, env_file, script in rules:
        assert env_file is not None, f"rule {name} has no conda: directive"
        assert (ENVS / env_file).is_file(), (name, env_file)
        assert script.is_file(), (name, script)


def test_third_party_import_scan_follows_prunelimit_and_function_level_imports():
    # scripts/prepare_dataset.py reaches scikit-learn only through an import inside a function of
    # prunelimit.data: the scan must see it, or a missing package would pass unnoticed.
    found = third_party_imports(ROOT / "scripts" / "prepare_dataset.py")
    assert found.get("sklearn") == "src/prunelimit/data.py"
    assert "torch" in found
    # scripts/figure.py imports its figure module by name: the scan follows the rule's entry
    figure = ROOT / "scripts" / "figure.py"
    assert "seaborn" not in third_party_imports(figure)  # the script alone reaches no plotting style
    found = third_party_imports(figure, entry_modules("fig_weight_distribution"))
    assert found.get("seaborn") == "src/prunelimit/figures/weight_magnitude.py"
    # and scripts/table.py its table's entry, the module that reads the rule's files
    assert entry_modules("table_tv_distance") == ["prunelimit.table_inputs"]


@pytest.mark.parametrize("rule,env_file,script", rules_with_env_and_script(), ids=lambda v: getattr(v, "name", v))
def test_rule_environment_holds_every_package_its_script_can_import(rule, env_file, script):
    available = env_import_names(env_file)
    missing = {pkg: where for pkg, where in third_party_imports(script, entry_modules(rule)).items()
               if pkg not in available}
    assert not missing, f"rule {rule} (envs/{env_file}) lacks {missing} (package: first file importing it)"


def test_post_deploy_scripts_are_one_script():
    # Snakemake looks for <env>.post-deploy.sh beside each environment; both install prunelimit the
    # same way, so one is a link to the other.
    plot = ENVS / "plot.post-deploy.sh"
    assert plot.is_symlink() and plot.resolve() == (ENVS / "torch.post-deploy.sh").resolve()


@pytest.mark.slow  # builds two virtualenvs and runs a rule chain in them: minutes (make test-slow)
def test_rules_run_inside_their_environments_under_sdm_conda(tmp_path, small_config):
    """`snakemake --sdm conda` end to end, with tests/fakeconda standing in for conda (no channel is
    reachable here): Snakemake creates both environments from envs/*.yaml (pip sections installed
    in fresh virtualenvs), runs the post-deploy script, and runs a compute rule chain (torch.yaml)
    and a figure (plot.yaml) inside them. Then every import of every rule script is tried in the
    environment its rule names."""
    config = small_config(tmp_path / "c.yaml", preset="conda", variants=["l1"],
                          tasks={"fc5_digits": {"model": "fc5", "dataset": "digits", "l1": 5.0e-5,
                                                "train": {"epochs": 1}}},
                          hessian={**load_config()["hessian"], "n_iter": 16, "max_iter": 16})  # no doubling: seconds
    work, prefix = tmp_path / "work", tmp_path / "conda-envs"
    path = f"{ROOT / 'tests' / 'fakeconda' / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(PATH=path, PRUNELIMIT_ROOT=str(ROOT))
    target = "results/conda/figures/hessian_spectrum.pdf"
    proc = subprocess.run([str(Path(sys.executable).with_name("snakemake")), "-s", str(ROOT / "Snakefile"),
                           "--directory", str(work), "--configfile", str(config), "--cores", "2",
                           "--sdm", "conda", "--conda-prefix", str(prefix), target],
                          capture_output=True, text=True, timeout=3600, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert (work / target).stat().st_size > 0
    env_of = {}  # Snakemake copies each environment file to <conda prefix>/<hash>.yaml beside its env
    for env_file in ("torch.yaml", "plot.yaml"):
        copies = [f for f in prefix.glob("*.yaml") if f.read_text() == (ENVS / env_file).read_text()]
        assert len(copies) == 1, (env_file, sorted(prefix.iterdir()))
        env_of[env_file] = copies[0].with_suffix("")
    logs = work / "results" / "conda" / "logs"
    for log, env_file in [("train/fc5_digits_l1.log", "torch.yaml"), ("hessian/fc5_digits_slq.log", "torch.yaml"),
                          ("figures/hessian_spectrum.log", "plot.yaml")]:
        first = (logs / log).read_text().splitlines()[0]  # rule_context's provenance line
        assert f"python {env_of[env_file]}/bin/python" in first, (log, first)
        assert f"prunelimit {ROOT / 'src' / 'prunelimit'}" in first, (log, first)  # post-deploy's editable install
    for env_file, env_dir in env_of.items():
        scripts = [script for _, env_name, script in rules_with_env_and_script() if env_name == env_file]
        statements = sorted({ast.unparse(node) for script in scripts for node in ast.parse(script.read_text()).body
                             if isinstance(node, ast.Import | ast.ImportFrom)})
        check = subprocess.run([env_dir / "bin" / "python", "-c", "\n".join(statements)], cwd=tmp_path,
                               capture_output=True, text=True, timeout=600, env={**env, "PATH": os.environ["PATH"]})
        assert check.returncode == 0, (env_file, check.stderr[-3000:])

