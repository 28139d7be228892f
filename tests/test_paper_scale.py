"""The paper preset's plan (benchmarks/paper_scale.py), the SLURM profile against it, and where SLQ's
Lanczos basis lives (hessian.basis_device)."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch
import yaml

import prunelimit.lanczos as lanczos_module
from pipeline_utils import ROOT, hessian_with, load_benchmark
from prunelimit import hvp_plan
from prunelimit.hessian import HessianOperator
from prunelimit.lanczos import BASIS_GPU_SHARE, basis_placement, slq
from prunelimit.models import build_model
from prunelimit.stages import spectrum_of_trained

paper_scale = load_benchmark("paper_scale")
PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
PRESET = ROOT / "workflow" / "presets" / "paper.yaml"


# ---------------------------------------------------------------------------------------------
# hessian.basis_device
# ---------------------------------------------------------------------------------------------


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _data(in_shape, n, classes=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *in_shape, generator=g), torch.randint(0, classes, (n,), generator=g)


@pytest.fixture
def basis_devices(monkeypatch):
    """The device of every Lanczos basis allocated while the test runs."""
    seen = []
    original = lanczos_module.Lanczos.__init__

    def spy(self, op, v0, max_steps, basis=None):
        original(self, op, v0, max_steps, basis)
        seen.append(self.basis.device)

    monkeypatch.setattr(lanczos_module.Lanczos, "__init__", spy)
    return seen


@pytest.mark.parametrize("case", ["mlp-support", "cnn-chunked"])
def test_slq_with_the_basis_in_host_memory_equals_the_default(case, basis_devices):
    if case == "mlp-support":  # the cached graph on the units alive: Lanczos on the support operator
        model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[24, 12]).eval()
        x, y = _data((1, 8, 8), 96)
        x[:, :, :2] = 0  # inputs zero on every sample: their weights' rows are off the support
        op = HessianOperator(model, x, y)
        assert op.on_support() is not None
    else:  # BatchNorm folded, products over chunks
        model = build_model("vgg16", (3, 8, 8), 10, seed=0, width=0.0625).eval()
        x, y = _data((3, 8, 8), 24)
        op = HessianOperator(model, x, y, chunk_size=10)
        assert not op.cached
    default = slq(op, n_runs=2, n_iter=10, seed=3, progress=False)
    on_host = slq(op, n_runs=2, n_iter=10, seed=3, progress=False, basis_device="cpu")
    same = slq(op, n_runs=2, n_iter=10, seed=3, progress=False, basis_device="same")
    for other in (on_host, same):
        assert other.alphas.shape == default.alphas.shape
        assert abs(other.alphas - default.alphas).max() <= 1e-6
        assert abs(other.betas - default.betas).max() <= 1e-6
    assert basis_devices == [torch.device("cpu")] * 6  # 3 calls x 2 runs, each run on its call's buffer
    assert on_host.settings["device"] == "cpu" and on_host.settings["basis_device"] == "cpu"
    assert default.settings["basis_device"] == "same" and same.settings["basis_device"] == "same"


def test_auto_puts_the_basis_in_host_memory_only_when_it_would_crowd_the_gpu():
    gpu = torch.device("cuda", 0)  # a device name only: no CUDA is needed to decide
    free = 80e9
    assert basis_placement("auto", gpu, int(BASIS_GPU_SHARE * free), free_bytes=int(free)) == gpu
    assert basis_placement("auto", gpu, int(BASIS_GPU_SHARE * free) + 1, free_bytes=int(free)) == torch.device("cpu")
    assert basis_placement("auto", torch.device("cpu"), 10**15) == torch.device("cpu")  # nothing to spare on a CPU
    assert basis_placement("same", gpu, 10**15) == gpu
    assert basis_placement(None, gpu, 10**15) == gpu
    assert basis_placement("cpu", gpu, 1) == torch.device("cpu")


def test_the_pipeline_hands_hessian_basis_device_to_slq(basis_devices):
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[16]).eval()
    x, y = _data((1, 8, 8), 64)
    data = SimpleNamespace(x_train=x, y_train=y)
    for setting in ("cpu", "auto", "same"):
        settings = hessian_with({"n_runs": 1, "n_iter": 6, "max_iter": 6, "chunk_size": 0, "basis_device": setting})
        result = spectrum_of_trained(model, data, settings, progress=False)
        assert result.settings["basis_device"] == setting and result.settings["device"] == "cpu"
    assert basis_devices == [torch.device("cpu")] * 3
    for preset in ("config.yaml", "workflow/presets/paper.yaml", "workflow/presets/smoke.yaml"):
        assert yaml.safe_load((ROOT / preset).read_text())["hessian"]["basis_device"] == "auto", preset


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_plan(tmp_path_factory):
    """benchmarks/paper_scale.py --quick on the paper preset (meta-device measurements, ~10 s): its rows."""
    out = tmp_path_factory.mktemp("plan")
    assert paper_scale.main(["--quick", "--out", str(out)]) == 0
    with open(out / "plan.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return out, rows


def test_quick_plan_covers_every_job_and_reads_back_for_check_gpu(quick_plan):
    out, rows = quick_plan
    config = paper_scale.load_preset(PRESET)
    tasks = list(config["tasks"])
    assert {r["task"] for r in rows if r["gpus"] == "1"} == set(tasks)
    assert [r["job"] for r in rows if r["rule"] == "dataset"] == ["cifar10", "cifar100", "mnist", "tinyimagenet"]
    for r in rows:
        if r["gpus"] == "1":
            assert float(r["a100_h"]) > float(r["h100_h"]) > 0, r  # the H100's peaks are higher
            assert 0 < float(r["gpu_mem_gb"]) <= 80 and r["over_gpu_memory"] == "False", r
    # the basis goes to host memory where it exceeds half the GPU: AlexNet (96 GB) and the ResNet50s (48 GB)
    host = {r["task"] for r in rows if r["basis_device"] == "host"}
    assert host == {"alexnet_cifar10", "resnet50_cifar100", "resnet50_tinyimagenet"}
    for r in rows:
        if r["basis_device"] == "host":
            assert float(r["host_mem_gb"]) > float(r["basis_gb"]) > 40, r
    text = (out / "plan.md").read_text()
    assert "## Per task" in text and "**total**" in text and "host memory" in text
    # make check-gpu reads the plan's projected product per task
    plan, status = hvp_plan.read_plan(out / "plan.csv", hvp_plan.paper_chunks())
    assert "10 of 10 tasks planned" in status and "'hvp_s'" in status
    assert all(e.seconds > 0 and e.samples in (50_000, 60_000, 100_000) and e.flops > 0 for e in plan.values())


def test_plan_job_counts_equal_the_dag():
    """The plan's jobs per rule are the jobs `snakemake -n` schedules for the paper preset."""
    config = paper_scale.load_preset(PRESET)
    mine: dict[str, int] = {}
    for job in paper_scale.enumerate_jobs(config):
        mine[job.rule] = mine.get(job.rule, 0) + 1
    assert mine == paper_scale.dag_job_counts(PRESET)


def test_slurm_profile_covers_the_plan(quick_plan):
    """Every rule's entry in the SLURM profile asks for at least what the plan's largest job of that rule
    needs, with the profile's stated margins: runtime 2 x the A100 projection, mem_mb 1.5 x host memory."""
    _, rows = quick_plan
    profile = yaml.safe_load(PROFILE.read_text())
    rules = profile["set-resources"]
    threads = profile.get("set-threads", {})
    for rule in sorted({r["rule"] for r in rows}):
        mine = [r for r in rows if r["rule"] == rule]
        entry = rules.get(rule)
        assert entry is not None, f"profile lacks rule {rule}"
        host_gb = max(float(r["host_mem_gb"]) for r in mine)
        assert entry["mem_mb"] >= paper_scale.HOST_MEMORY_MARGIN * host_gb * 1000, (rule, entry, host_gb)
        if mine[0]["gpus"] == "0":
            assert "gpu" not in entry
            continue
        assert entry["gpu"] == 1
        hours = max(float(r["a100_h"]) for r in mine)
        assert entry["runtime"] >= paper_scale.RUNTIME_MARGIN * hours * 60, (rule, entry, hours)
        assert max(float(r["gpu_mem_gb"]) for r in mine) <= 80
        on_host = any(r["basis_device"] == "host" for r in mine)
        cpus = paper_scale.CPUS_HOST_BASIS if on_host else paper_scale.CPUS_GPU_JOB
        assert entry["cpus_per_task"] >= cpus, (rule, entry)
        if on_host:  # the reorthogonalisation on the host runs on the job's torch threads
            assert threads.get(rule) == entry["cpus_per_task"], rule


def test_meta_counts_equal_a_real_product_and_memory_scales_with_the_chunk():
    """FLOPs counted on the meta device are those of a real product on CPU tensors; the planned chunk grows
    with its samples by the measured per-sample bytes."""
    arch = paper_scale.measure("vgg16", {"width": 0.125}, (3, 32, 32), 10, "prunable", "meta")
    real = paper_scale.real_cpu_check("vgg16", {"width": 0.125}, [3, 32, 32], 10, "prunable", 2)
    assert math.isclose(real["hvp_conv"], arch.hvp.conv, rel_tol=1e-9) and real["hvp_conv"] > 0
    assert math.isclose(real["hvp_mm"], arch.hvp.mm, rel_tol=1e-9)
    assert arch.hvp.total > arch.step.total > arch.fwd.total > 0
    assert arch.hvp_slope > 0 and arch.chunk_bytes(100) - arch.chunk_bytes(0) == pytest.approx(100 * arch.hvp_slope)
