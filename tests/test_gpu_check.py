"""`make check-gpu` (prunelimit.gpu_check): its CPU parts, and the one line it prints without CUDA."""

import math
import subprocess
import sys

import pytest
import torch

from pipeline_utils import load_config
from prunelimit import gpu_check, hvp_plan
from prunelimit.architectures import dataset_shape, parameter_count

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _two_smallest_paper_tasks() -> list[str]:
    config = load_config("workflow/presets/paper.yaml")

    def size(task):
        entry = config["tasks"][task]
        in_shape, classes = dataset_shape(entry["dataset"])
        return parameter_count(entry["model"], in_shape, classes, **entry["model_args"]).prunable

    return sorted(config["tasks"], key=size)[:2]


def test_agreement_check_passes_on_the_cpu_against_itself():
    rows = gpu_check.check_agreement("cpu")
    assert len(rows) == 2 * len(gpu_check.AGREEMENT_MODELS)  # an HVP and a Lanczos row per model
    assert all(r.ok for r in rows), gpu_check.format_table(rows)
    assert all(r.value == 0.0 for r in rows)  # the same device, the same numbers
    assert all(r.tolerance == "<= 1e-08" for r in rows)


def test_table_flags_a_value_beyond_its_tolerance():
    rows = [gpu_check.within("inside", 5e-9, 1e-8), gpu_check.within("beyond", 2e-8, 1e-8),
            gpu_check.within("not a number", math.nan, 1e-8), gpu_check.Row("measured", 1.5, note="info only")]
    assert [r.ok for r in rows] == [True, False, False, None]
    assert [r.check for r in gpu_check.failed(rows)] == ["beyond", "not a number"]
    lines = gpu_check.format_table(rows).splitlines()
    assert lines[0].split()[:4] == ["check", "value", "tolerance", "ok"]
    status = {line.split("  ")[0].strip(): line for line in lines[2:]}
    assert " ok " in status["inside"] + " "
    assert "FAIL" in status["beyond"] and "2e-08" in status["beyond"] and "<= 1e-08" in status["beyond"]
    assert "FAIL" in status["not a number"]
    assert "info" in status["measured"] and "FAIL" not in status["measured"]


def test_hvp_chunks_of_the_two_smallest_architectures_on_the_cpu(tmp_path):
    tasks = _two_smallest_paper_tasks()
    assert tasks == ["mlpnet_mnist", "resnet20_cifar10"]
    rows = gpu_check.check_hvp_chunks("cpu", tasks=tasks, samples=1, plan_path=tmp_path / "absent.csv")
    assert [r.check for r in rows] == [f"hvp chunk {t} (1 samples): s" for t in tasks] + ["plan"]
    assert all(r.ok is None for r in rows)  # no plan: informational only
    assert all(0 < r.value < 60 for r in rows[:2])
    assert rows[-1].value == "missing" and "plan missing" in rows[-1].note

    # against a plan: generous for MLPNet, impossible for ResNet20 (a 1-sample chunk projected to its training set)
    plan = tmp_path / "plan.csv"
    plan.write_text("task,model,hvp_s,hvp_flops\nmlpnet_mnist,mlpnet,1e9,1e12\nresnet20_cifar10,resnet20,1e-6,1e12\n")
    rows = gpu_check.check_hvp_chunks("cpu", tasks=tasks, samples=1, plan_path=plan)
    mlpnet, resnet20, status = rows
    assert mlpnet.ok is True and mlpnet.value < 1 and "per 60000 samples" in mlpnet.note and "TFLOP/s" in mlpnet.note
    assert resnet20.ok is False and resnet20.value > gpu_check.PLAN_SLOWDOWN_LIMIT
    assert "the plan's efficiency assumption is too optimistic" in resnet20.note
    assert status.value == "read" and "'hvp_s'" in status.note and "2 of 2" in status.note


def test_plan_matched_on_model_and_dataset_when_it_has_no_task_column(tmp_path):
    specs = hvp_plan.paper_chunks(tasks=["resnet18_cifar100", "resnet18_tinyimagenet", "vgg16_cifar10"])
    assert [s.in_shape for s in specs] == [(3, 32, 32), (3, 64, 64), (3, 32, 32)]
    assert [s.num_classes for s in specs] == [100, 200, 10]
    plan = tmp_path / "plan.csv"
    plan.write_text("architecture,dataset,hvp_seconds,n_train\nresnet18,cifar100,10,50000\n"
                    "resnet18,tinyimagenet,40,100000\n")
    entries, status = hvp_plan.read_plan(plan, specs)
    assert {t: (e.seconds, e.samples) for t, e in entries.items()} == {
        "resnet18_cifar100": (10.0, 50000), "resnet18_tinyimagenet": (40.0, 100000)}
    assert "2 of 3 tasks planned" in status
    entries, status = hvp_plan.read_plan(plan.with_name("other.csv"), specs)
    assert entries == {} and "plan missing" in status


def test_a_chunk_that_does_not_fit_fails_even_within_the_plans_time():
    spec = hvp_plan.paper_chunks(tasks=["resnet50_cifar100"])[0]
    halved = gpu_check.ChunkTiming(seconds=1.0, samples=spec.chunk_size // 4, asked=spec.chunk_size, dim=1,
                                   peak_bytes=70 * 2**30)
    plan = hvp_plan.PlanEntry(seconds=1e6, samples=50_000, flops=None, column="hvp_s")
    row = gpu_check.chunk_row(spec, halved, plan)
    assert row.ok is False and f"out of memory at {spec.chunk_size} samples" in row.note and "70.0 GiB" in row.note
    fits = gpu_check.ChunkTiming(seconds=1.0, samples=spec.chunk_size, asked=spec.chunk_size, dim=1, peak_bytes=None)
    assert gpu_check.chunk_row(spec, fits, plan).ok is True
    assert gpu_check.chunk_row(spec, halved, None).ok is False  # no plan, yet the preset's chunk does not fit


def test_a_chunk_out_of_memory_is_halved_until_it_fits_and_a_crash_is_a_failed_row(monkeypatch, tmp_path):
    import prunelimit.hessian

    class SmallMemory(prunelimit.hessian.HessianOperator):
        def __init__(self, model, x, y, **kwargs):
            if len(x) > 2:
                raise torch.OutOfMemoryError(f"CUDA out of memory (fake: {len(x)} samples)")
            super().__init__(model, x, y, **kwargs)

    monkeypatch.setattr(prunelimit.hessian, "HessianOperator", SmallMemory)
    spec = hvp_plan.paper_chunks(tasks=["fc5_cifar10"])[0]
    timing = gpu_check.time_hvp_chunk(spec, "cpu", samples=8)  # 8 and 4 do not fit
    assert (timing.samples, timing.asked) == (2, 8) and timing.seconds > 0
    row = gpu_check.chunk_row(spec, timing, None)
    assert row.ok is False and "out of memory at 8 samples" in row.note

    def crash(spec, device, samples):
        if spec.task == "fc5_cifar10":
            raise ValueError("no such kernel")
        return gpu_check.ChunkTiming(0.5, samples, samples, 1, None)

    monkeypatch.setattr(gpu_check, "time_hvp_chunk", crash)
    rows = gpu_check.check_hvp_chunks("cpu", tasks=["fc5_cifar10", "fc12_cifar10"], samples=1,
                                      plan_path=tmp_path / "absent.csv")
    assert [(r.check, r.ok) for r in rows] == [("hvp chunk fc5_cifar10", False),
                                               ("hvp chunk fc12_cifar10 (1 samples): s", None), ("plan", None)]
    assert rows[0].note == "ValueError: no such kernel"


def test_smoke_command_runs_the_smoke_preset_on_the_device(tmp_path):
    cmd = gpu_check.smoke_command(torch.device("cuda"), tmp_path)
    assert cmd[0].endswith("snakemake") and cmd[cmd.index("-s") + 1] == str(gpu_check.ROOT / "Snakefile")
    assert cmd[cmd.index("--configfile") + 1] == str(gpu_check.ROOT / "workflow" / "presets" / "smoke.yaml")
    assert cmd[cmd.index("--config") + 1] == "device=cuda"
    assert cmd[cmd.index("--directory") + 1] == str(tmp_path)
    assert cmd[cmd.index("--cores") + 1] == "all"


# Stand-ins for the smoke run: it writes one SLQ result recording the device it was given, exits 3, or hangs.
_FAKE_SLQ = """
import json, pathlib, sys
import numpy as np
out = pathlib.Path(sys.argv[1]) / "results" / "smoke" / "hessian" / "fc5_cifar10"
out.mkdir(parents=True)
np.savez(out / "slq.npz", settings=np.array(json.dumps({"device": sys.argv[2]})))
print("fake smoke run done")
"""


@pytest.mark.parametrize("script, args, timeout, ok, note", [
    (_FAKE_SLQ, ["cpu"], 60, True, "cpu"),
    (_FAKE_SLQ, ["cuda:0"], 60, False, "kept"),  # passed, but SLQ did not run on the device asked for
    ("import sys; print('boom'); sys.exit(3)", [], 60, False, "snakemake exited 3"),
    ("import time; time.sleep(60)", [], 1, False, "timed out after 1 s"),
], ids=["passes", "wrong-device", "fails", "times-out"])
def test_smoke_check_passes_only_a_run_that_finishes_on_the_device(monkeypatch, capsys, script, args, timeout, ok,
                                                                   note):
    monkeypatch.setattr(gpu_check, "smoke_command",
                        lambda device, workdir: [sys.executable, "-c", script, str(workdir), *args])
    rows = gpu_check.check_smoke("cpu", timeout=timeout)
    assert rows[-1].ok is ok and note in rows[-1].note, gpu_check.format_table(rows)
    assert rows[0].check == "smoke preset, device=cpu: wall s" and rows[0].value < 50
    if ok:
        assert [r.value for r in rows] == [rows[0].value, "1/1"]
    else:
        kept = rows[-1].note.rsplit("kept ", 1)[1]
        assert (gpu_check.Path(kept) / "snakemake.log").is_file()
        gpu_check.shutil.rmtree(kept)
    if args == []:
        assert "last lines of" in capsys.readouterr().err


def test_help_names_the_options(capsys):
    with pytest.raises(SystemExit) as exit_:
        gpu_check.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--skip-smoke" in out and "--timeout" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_without_cuda_one_line_and_exit_0():
    proc = subprocess.run([sys.executable, "-m", "prunelimit.gpu_check"], capture_output=True, text=True,
                          timeout=120, cwd=gpu_check.ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = (proc.stdout + proc.stderr).splitlines()
    assert lines == [gpu_check.no_device_line()]
    assert lines[0].startswith("check-gpu: no CUDA device visible to torch ")
