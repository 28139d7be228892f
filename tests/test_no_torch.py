"""Figure and table jobs run without torch: their scripts and what those call import none.

The rules that name envs/plot.yaml (figures, and tables with their HTML pages) only read files that compute
rules wrote, so the plot environment has no torch, and a figure rebuilds without paying torch's
import. Statically: no import statement reachable from their scripts (at any depth, inside
functions too), or from the modules scripts/figure.py and scripts/table.py import by name (each figure and
table rule's entry), names torch. At run time, in a Python where `import torch` fails and says who tried
(tests/no_torch/sitecustomize.py): the scripts' imports, every figure rule's draw function and table rule's
entry, and the readers they call on real files (state_dict weights, SLQ and exact spectra). prunelimit.statedict
reads a state_dict without torch; here it is checked against torch.load on every registry model.
"""

import ast
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from pipeline_utils import NO_TORCH, ROOT, TORCH_REFUSED, workflow_rules
from prunelimit.architectures import ARCHITECTURES
from prunelimit.io import PrunelimitError
from prunelimit.models import build_model, prunable_parameters, prunable_vector
from prunelimit.spectrum import SLQResult, save_exact
from prunelimit.statedict import prunable_weights, read_state_dict_arrays
from test_envs import entry_modules, env_import_names, rules_with_env_and_script, third_party_imports

PLOT_RULES = [(rule, script) for rule, env, script in rules_with_env_and_script() if env == "plot.yaml"]
# What the figure and table scripts use of the library (directly or inside the functions they call).
TORCH_FREE = ["io", "errors", "tables", "table_inputs", "claim", "seeds", "spectrum", "statedict", "sparsity", "runlog",
              "entries", "figures", "figures.style", "figures.pruning_curves", "figures.theory_vs_actual",
              "figures.iterative_pruning", "figures.hessian", "figures.weight_magnitude", "figures.regime_map",
              "figures.lomp_vs_sota", "methods", "sections", "settings"]
SMALL = {"alexnet": {"width": 0.125, "resize": 64}, "vgg16": {"width": 0.125},
         "resnet18": {"width": 0.125}, "resnet50": {"width": 0.125}, "fc12": {"width": 0.25}}


def run_without_torch(code: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(NO_TORCH), str(ROOT / "src")]), "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def test_the_refusal_catches_an_import_of_torch(tmp_path):
    # the run-time checks below mean something only if the sitecustomize is active in the subprocess
    proc = run_without_torch("import prunelimit.checkpoint", tmp_path)
    assert proc.returncode != 0 and TORCH_REFUSED in proc.stderr


def test_the_plot_environment_has_no_torch_and_no_plot_rule_script_can_reach_it():
    assert len(PLOT_RULES) >= 16, PLOT_RULES  # every figure and table rule was found
    assert "torch" not in env_import_names("plot.yaml")
    found = {rule: third_party_imports(script, entry_modules(rule)) for rule, script in PLOT_RULES}
    reaching = {rule: imports["torch"] for rule, imports in found.items() if "torch" in imports}
    assert not reaching, f"rule: first file importing torch {reaching}"


def test_plot_rule_scripts_import_without_torch(tmp_path):
    statements = sorted({ast.unparse(node) for _, script in PLOT_RULES for node in ast.parse(script.read_text()).body
                         if isinstance(node, ast.Import | ast.ImportFrom)})
    modules = "; ".join(f"import prunelimit.{m}" for m in TORCH_FREE)
    # what scripts/figure.py and scripts/table.py import by name; the TV table's weights reader among them
    entries = sorted(r["entry"] for r in workflow_rules() if r["entry"])
    assert len(entries) >= 17 and "prunelimit.table_inputs:tv_distance_from_files" in entries, entries
    code = "\n".join([*statements, modules,
                      f"from prunelimit.entries import resolve; drawers = [resolve(e) for e in {entries!r}]",
                      "from prunelimit.runlog import rule_context",
                      "with rule_context('rule.log') as log: log.info('inside')",  # the rules' wrapper, run
                      "import sys; assert 'torch' not in sys.modules, sorted(sys.modules)"])
    proc = run_without_torch(code, tmp_path)
    assert proc.returncode == 0 and TORCH_REFUSED not in proc.stderr, proc.stderr[-3000:]
    assert "torch not loaded" in (tmp_path / "rule.log").read_text().splitlines()[0]


def test_the_readers_figure_and_table_jobs_call_run_without_torch(tmp_path):
    """The weight histograms' and TV table's state_dict reader, the spectrum figure's and SLQ table's
    loaders, and the TV table's entry, on files written the way the compute rules write them; their results
    checked here."""
    model = build_model("vgg16", (3, 32, 32), 10, seed=0, width=0.125)  # conv, BN (int64 counter), linear
    torch.save(model.state_dict(), tmp_path / "model.pt")
    n_prunable = sum(p.numel() for _, p in prunable_parameters(model))
    (tmp_path / "metrics.json").write_text(json.dumps({"n_prunable": n_prunable}))
    rng = np.random.default_rng(0)
    SLQResult(rng.normal(size=(2, 4)), np.full((2, 4), 0.25), np.ones((2, 4)), np.ones((2, 3)), 50,
              {"runs": 2}).save(tmp_path / "slq.npz", n_bins=20, sigma2=1e-3)
    save_exact(tmp_path / "exact.npz", np.sort(rng.normal(size=50)), {})
    code = "\n".join([
        "import numpy as np",
        "from prunelimit.figures.weight_magnitude import load_prunable_weights",
        "from prunelimit.spectrum import SLQResult, load_exact",
        "from prunelimit.statedict import prunable_weights",
        "q = SLQResult.load('slq.npz').quadrature()",
        "np.savez('out.npz', figure=load_prunable_weights('model.pt', 'metrics.json'),",
        "         table=prunable_weights('model.pt'), exact=load_exact('exact.npz'), nodes=q.nodes)",
        "from types import SimpleNamespace as N",
        "from prunelimit.table_inputs import tv_distance_from_files",
        "tv = tv_distance_from_files(N(reference=['model.pt'], reseeded=['model.pt']),",
        "                            N(tasks=['vgg'], seeds=[1], bins=20, base_seed=0))",
        "assert tv.n_weights.tolist() == [len(prunable_weights('model.pt'))] and tv.tv_weights[0] == 0, tv",
        "import sys; assert 'torch' not in sys.modules"])
    proc = run_without_torch(code, tmp_path)
    assert proc.returncode == 0 and TORCH_REFUSED not in proc.stderr, proc.stderr[-3000:]
    out = np.load(tmp_path / "out.npz")
    expected = prunable_vector(model).double().numpy()
    assert out["figure"].dtype == np.float64 and np.array_equal(out["figure"], expected)
    assert out["table"].dtype == np.float32 and np.array_equal(out["table"], expected.astype(np.float32))
    assert np.array_equal(out["exact"], np.load(tmp_path / "exact.npz")["eigenvalues"])
    assert out["nodes"].size == 8


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_statedict_reads_what_torch_load_reads(tmp_path, name):
    shape = (3, 64, 64) if name == "alexnet" else (3, 32, 32)
    model = build_model(name, shape, 10, seed=1, **SMALL.get(name, {}))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True)
    arrays = read_state_dict_arrays(tmp_path / "model.pt")
    assert list(arrays) == list(loaded)  # same entries, same order
    for key, tensor in loaded.items():
        assert arrays[key].dtype == tensor.numpy().dtype and np.array_equal(arrays[key], tensor.numpy()), key
    # the state_dict rule for "prunable" picks exactly prunable_parameters, in its order
    flat = prunable_vector(model).numpy()
    assert np.array_equal(prunable_weights(tmp_path / "model.pt", expected=flat.size), flat)


def test_statedict_follows_offsets_strides_and_dtypes(tmp_path):
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10)
    state = {"view": base[1:, ::3], "t": base.t(), "half": torch.ones(3, dtype=torch.float16),
             "flag": torch.tensor([True, False]), "count": torch.tensor(7), "empty": torch.zeros(0, 4)}
    torch.save(state, tmp_path / "s.pt")  # the views share base's storage: offset and strides matter
    arrays = read_state_dict_arrays(tmp_path / "s.pt")
    for key, tensor in state.items():
        assert arrays[key].dtype == tensor.numpy().dtype and np.array_equal(arrays[key], tensor.numpy()), key


class Payload:
    """Unpickling this runs code: it creates the file ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return exec, (f"open({self.path!r}, 'w').close()",)


def test_statedict_refuses_payloads_and_non_checkpoints(tmp_path):
    marker = tmp_path / "PAYLOAD_RAN"
    torch.save({"linear.weight": torch.ones(2, 2), "x": Payload(marker)}, tmp_path / "hostile.pt")
    refused = r"hostile\.pt: it holds a pickled call to \w+\.exec, which is not a state_dict's$"
    with pytest.raises(PrunelimitError, match=refused):
        read_state_dict_arrays(tmp_path / "hostile.pt")
    assert not marker.exists()
    (tmp_path / "plain.pt").write_bytes(pickle.dumps({"w": np.ones(2)}))
    with pytest.raises(PrunelimitError, match="not a zip archive"):
        read_state_dict_arrays(tmp_path / "plain.pt")
    with pytest.raises(PrunelimitError, match="missing checkpoint"):
        read_state_dict_arrays(tmp_path / "absent.pt")
    torch.save({"layer.weight": torch.ones(3, 3)}, tmp_path / "small.pt")
    with pytest.raises(PrunelimitError, match="holds 9 prunable weights, its metrics say 10"):
        prunable_weights(tmp_path / "small.pt", expected=10)


# Imported by a compute job only where used: each costs 0.1-0.2 s, paid by every one of the ~170
# jobs of the mini DAG that would otherwise import it for nothing.
LAZY_IN_COMPUTE_JOBS = ("pandas", "jsonschema", "PIL", "matplotlib")


def test_compute_rule_scripts_leave_heavy_packages_until_used(tmp_path):
    compute = sorted({script for _, env, script in rules_with_env_and_script() if env != "plot.yaml"})
    assert len(compute) >= 8, compute  # train, slq, theory, sweep, baseline, ... were found
    # the slq rule draws a diagnostic plot: its figure import loads the plotting stack it uses
    statements = sorted({ast.unparse(node) for script in compute for node in ast.parse(script.read_text()).body
                         if isinstance(node, ast.Import | ast.ImportFrom) and "figures" not in ast.unparse(node)})
    code = "\n".join([*statements, "import sys",
                      f"print(sorted(m for m in {LAZY_IN_COMPUTE_JOBS!r} if m in sys.modules))"])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "[]", f"compute scripts import {proc.stdout.strip()} at start"
