"""``make check-gpu``: whether a GPU machine runs the pipeline, agrees with the CPU, and keeps the plan's pace.

    python -m prunelimit.gpu_check [--skip-smoke] [--timeout SECONDS] [--plan PATH]

The device is chosen once, as every job of the pipeline chooses it
(:func:`prunelimit.config.resolve_device` with ``"auto"``), and handed to each check. Without CUDA
the command prints one line and exits 0: there is nothing to check. With CUDA (sized to stay within
10 min on one GPU: the smoke run, capped by ``--timeout`` at 450 s, is most of it):

a. ``smoke``: the smoke preset (``workflow/presets/smoke.yaml``: every paper architecture, every
   stage, tiny data) end to end with ``--config device=cuda`` in a scratch directory, timed. Fails
   when snakemake fails or outlives ``--timeout``, or when an SLQ result says it ran elsewhere.
b. ``agreement``: one Hessian-vector product and a 64-step Lanczos run (:class:`prunelimit.lanczos.Lanczos`,
   the same Rademacher start vector on both devices) in float64 on a small MLP and a narrow ResNet18
   on random data, the device against the CPU. Fails when ‖Hv_dev − Hv_cpu‖/‖Hv_cpu‖ or
   max|Δ(α, β)|/max|(α, β)_cpu| exceeds :data:`AGREEMENT_TOL` (1e-8). Rounding differences do
   not grow through the run: relative noise of 1e-14 on every product moves the MLP's α and β by
   1.2e-14 (full reorthogonalisation).
c. ``hvp chunks``: one Hessian-vector chunk of each paper task (``workflow/presets/paper.yaml``:
   the model at its paper width, input shape and class count, ``hessian.chunk_size`` random
   samples, float32) as :class:`prunelimit.hessian.HessianOperator` computes every chunk of the
   paper's products (forward, gradient with graph, backward), timed between CUDA synchronisations
   after a warm-up. With ``results/paper/plan.csv`` (written by ``benchmarks/paper_scale.py``) each
   chunk is projected to one product over the training set (× n_train / samples) and set against
   the plan's projected HVP seconds: informational, unless a chunk is more than
   :data:`PLAN_SLOWDOWN_LIMIT` (3×) slower than planned, or does not fit in the GPU's memory at the
   preset's chunk size. Without the plan the times are printed alone.

Then a table (check, value, tolerance, ok) and exit status 1 if any row failed.

Every check is a function of the device that returns table rows (:class:`Row`), so the CPU parts
run in the test suite (tests/test_gpu_check.py) with ``device="cpu"``.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import resolve_device
from .hvp_plan import DEFAULT_PLAN, PAPER_PRESET, ChunkSpec, PlanEntry, paper_chunks, read_plan

ROOT = Path(__file__).resolve().parents[2]  # the repository (the package is installed editable from it)
SMOKE_PRESET = ROOT / "workflow" / "presets" / "smoke.yaml"

SMOKE_TIMEOUT_S = 450  # the smoke run's limit: the whole check stays within 10 min on one GPU
AGREEMENT_TOL = 1e-8
LANCZOS_STEPS = 64
PLAN_SLOWDOWN_LIMIT = 3.0


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------


@dataclass
class Row:
    """One line of the table: ``ok`` True/False, or None for a value printed for information."""

    check: str
    value: float | str
    tolerance: str = ""
    ok: bool | None = None
    note: str = ""


def within(check: str, value: float, tolerance: float, note: str = "") -> Row:
    """A row that passes when ``value`` ≤ ``tolerance`` (NaN never passes)."""
    value = float(value)
    return Row(check, value, f"<= {tolerance:g}", bool(math.isfinite(value) and value <= tolerance), note)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def format_table(rows: list[Row]) -> str:
    """The rows as aligned columns check | value | tolerance | ok | note (ok: ok, FAIL or info)."""
    header = ("check", "value", "tolerance", "ok", "note")
    cells = [header] + [(r.check, _cell(r.value), r.tolerance or "-", {True: "ok", False: "FAIL", None: "info"}[r.ok],
                         r.note) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header) - 1)]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(widths))) + "  " + c[-1] for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * len(header[-1]))
    return "\n".join(line.rstrip() for line in lines)


def failed(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.ok is False]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------------------------------
# a. The smoke preset on the device
# ---------------------------------------------------------------------------------------------


def smoke_command(device: torch.device | str, workdir: str | os.PathLike) -> list[str]:
    """The snakemake command line of the smoke preset on ``device``, run in ``workdir``."""
    snakemake = Path(sys.executable).with_name("snakemake")
    return [str(snakemake), "-s", str(ROOT / "Snakefile"), "--cores", "all", "--configfile", str(SMOKE_PRESET),
            "--config", f"device={torch.device(device).type}", "--directory", str(workdir)]


def _slq_devices(workdir: Path) -> list[str]:
    """The device each SLQ result of a finished smoke run records (settings['device'])."""
    import json

    import numpy as np

    devices = []
    for path in sorted((workdir / "results").glob("*/hessian/*/slq.npz")):
        with np.load(path, allow_pickle=False) as arrays:
            devices.append(str(json.loads(str(arrays["settings"])).get("device", "?")))
    return devices


def check_smoke(device: torch.device | str, timeout: float = SMOKE_TIMEOUT_S) -> list[Row]:
    """Run the smoke preset on ``device`` in a scratch directory: its wall time, and whether it
    passed. The directory is removed after a pass and kept (its path printed) after a failure."""
    device = torch.device(device)
    workdir = Path(tempfile.mkdtemp(prefix="check-gpu-smoke-"))
    log_path = workdir / "snakemake.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    check = f"smoke preset, device={device.type}"
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        # its own process group, so a timeout ends snakemake and the jobs it started
        proc = subprocess.Popen(smoke_command(device, workdir), stdout=log, stderr=subprocess.STDOUT, env=env,
                                cwd=workdir, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            rc = None
    wall = time.perf_counter() - t0
    tolerance = f"exit 0 in <= {timeout:g} s"
    if rc != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-40:])
        print(f"check-gpu: the smoke run {'timed out' if rc is None else f'exited {rc}'}; last lines of "
              f"{log_path}:\n{tail}", file=sys.stderr)
        why = f"timed out after {timeout:g} s" if rc is None else f"snakemake exited {rc}"
        return [Row(f"{check}: wall s", wall, tolerance, False, f"{why}; kept {workdir}")]
    rows = [Row(f"{check}: wall s", wall, tolerance, True)]
    devices = _slq_devices(workdir)
    on_device = sum(d.split(":")[0] == device.type for d in devices)
    rows.append(Row(f"{check}: SLQ results on {device.type}", f"{on_device}/{len(devices)}", "all",
                    bool(devices) and on_device == len(devices), ", ".join(sorted(set(devices)))))
    if rows[-1].ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        rows[-1].note += f"; kept {workdir}"
    return rows


# ---------------------------------------------------------------------------------------------
# b. Float64 agreement with the CPU: one Hessian-vector product, one Lanczos run
# ---------------------------------------------------------------------------------------------

# (label, registry model, input shape, classes, model arguments, samples)
AGREEMENT_MODELS = (
    ("mlp 64-32-16-10", "mlp", (1, 8, 8), 10, {"hidden": [32, 16]}, 256),
    ("resnet18 w=1/16 3x8x8", "resnet18", (3, 8, 8), 10, {"width": 0.0625}, 16),
)


def _relative_difference(value: torch.Tensor, reference: torch.Tensor) -> float:
    scale = torch.linalg.vector_norm(reference).item()
    return torch.linalg.vector_norm(value - reference).item() / scale if scale > 0 else math.inf


def check_agreement(device: torch.device | str, reference: torch.device | str = "cpu",
                    steps: int = LANCZOS_STEPS, tolerance: float = AGREEMENT_TOL,
                    models=AGREEMENT_MODELS) -> list[Row]:
    """Float64 Hessian-vector products and ``steps`` Lanczos steps on ``device`` against ``reference``.

    Each model is built once (seed 0) and copied to both devices; data, product vector and Lanczos
    start vector are drawn on the CPU from fixed seeds, so both devices get the same numbers. The
    HVP row is ‖Hv_dev − Hv_ref‖/‖Hv_ref‖; the Lanczos row is max_j |Δ(α, β)_j| / max_j |(α, β)_j|
    over the tridiagonal's entries (relative to ‖T‖'s scale: an α near 0 would make an
    entrywise relative difference meaningless), ∞ when the runs stop at different steps.
    """
    import copy

    import numpy as np

    from .hessian import HessianOperator
    from .lanczos import Lanczos, rademacher
    from .models import build_model

    device, reference = torch.device(device), torch.device(reference)
    rows = []
    for label, name, in_shape, classes, model_args, samples in models:
        model = build_model(name, in_shape, classes, seed=0, **model_args).double()
        generator = torch.Generator().manual_seed(0)
        x = torch.randn((samples, *in_shape), generator=generator, dtype=torch.float64)
        y = torch.randint(0, classes, (samples,), generator=generator)
        ops = [HessianOperator(copy.deepcopy(model).to(d), x.to(d), y.to(d)) for d in (reference, device)]
        v = torch.randn(ops[0].dim, generator=generator, dtype=torch.float64)
        hv_ref, hv_dev = (op.matvec(v.to(op.device)).cpu() for op in ops)
        rows.append(within(f"hvp float64 {label}: rel. diff", _relative_difference(hv_dev, hv_ref), tolerance,
                           f"D={ops[0].dim}, {device.type} vs {reference.type}"))
        start = rademacher(ops[0].dim, torch.Generator().manual_seed(0), torch.float64)
        runs = []
        for op in ops:
            run = Lanczos(op, start.to(op.device), steps)
            run.extend(steps)
            runs.append(run)
        tridiagonals = [np.concatenate([run.alphas, run.betas]) for run in runs]
        scale = float(np.abs(tridiagonals[0]).max()) if tridiagonals[0].size else 0.0
        if runs[0].steps != runs[1].steps or scale == 0:
            diff = math.inf
        else:
            diff = float(np.abs(tridiagonals[1] - tridiagonals[0]).max()) / scale
        rows.append(within(f"lanczos {steps} steps float64 {label}: rel. diff of alpha, beta", diff, tolerance,
                           f"steps {runs[0].steps} vs {runs[1].steps}"))
    return rows


# ---------------------------------------------------------------------------------------------
# c. One Hessian-vector chunk per paper task, timed, against the plan (both from prunelimit.hvp_plan)
# ---------------------------------------------------------------------------------------------



@dataclass
class ChunkTiming:
    seconds: float  # one chunk of ``samples`` samples: forward, gradient with graph, one backward
    samples: int  # the samples it ran on (fewer than asked when the asked chunk did not fit)
    asked: int
    dim: int
    peak_bytes: int | None  # peak device memory of the chunk (CUDA only)


def time_hvp_chunk(spec: ChunkSpec, device: torch.device | str, samples: int | None = None) -> ChunkTiming:
    """Time one Hessian-vector chunk of ``spec`` on ``device`` (``samples``: the spec's chunk size
    unless given), float32 on random inputs and labels, between device synchronisations.

    The work is that of one chunk of :meth:`HessianOperator._chunked_matvec`, the path every paper
    product takes (the training set is many chunks): the operator is built on the chunk alone with
    its graph cached (forward and gradient with graph), then one product (backward). The live-unit
    shortcut of MLPs is off, since the chunked path never takes it. A warm-up on two samples comes
    first (CUDA context, cuBLAS/cuDNN handles, kernel loading). When the chunk does not fit in
    device memory it is halved until it does, and the timing says so (``samples < asked``).
    """
    from .hessian import HessianOperator
    from .models import build_model, prunable_parameters

    device = torch.device(device)
    asked = int(samples if samples is not None else spec.chunk_size)
    model = build_model(spec.model, spec.in_shape, spec.num_classes, seed=0, **spec.model_args).to(device)
    params = ([p for _, p in prunable_parameters(model)] if spec.params == "prunable"
              else [p for p in model.parameters() if p.requires_grad])
    dim = sum(p.numel() for p in params)
    generator = torch.Generator().manual_seed(0)
    v = torch.randn(dim, generator=generator).to(device)

    def one_chunk(n: int) -> float:
        x = torch.randn((n, *spec.in_shape), generator=generator).to(device)
        y = torch.randint(0, spec.num_classes, (n,), generator=generator).to(device)
        _sync(device)
        t0 = time.perf_counter()
        op = HessianOperator(model, x, y, params=spec.params, chunk_size=0, skip_dead_units=False)
        hv = op.matvec(v)
        _sync(device)
        seconds = time.perf_counter() - t0
        if not torch.isfinite(hv).all():
            raise FloatingPointError(f"{spec.task}: the Hessian-vector product is not finite")
        return seconds

    one_chunk(min(asked, 2))
    n = asked
    while True:
        try:
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            seconds = one_chunk(n)
            peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            return ChunkTiming(seconds, n, asked, dim, peak)
        except RuntimeError as err:  # torch.OutOfMemoryError is one
            if n == 1 or not _out_of_memory(err):
                raise
            n = max(1, n // 2)


def _out_of_memory(err: BaseException) -> bool:
    """The caching allocator's OutOfMemoryError, or a library's own failed allocation (cuDNN, cuBLAS)."""
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "alloc_failed" in text




def _gib(n: int | None) -> str:
    return f", peak {n / 2**30:.1f} GiB" if n is not None else ""


def chunk_row(spec: ChunkSpec, timing: ChunkTiming, plan: PlanEntry | None,
              limit: float = PLAN_SLOWDOWN_LIMIT) -> Row:
    """The table row of one timed chunk: measured against the plan when it has the task."""
    check = f"hvp chunk {spec.task} ({timing.samples} samples)"
    per_sample = timing.seconds / timing.samples
    fits = timing.samples == timing.asked
    fit_note = "" if fits else f"; out of memory at {timing.asked} samples (the preset's chunk_size)"
    if plan is None or plan.seconds is None or not plan.samples:
        note = f"{timing.seconds:.3g} s, D={timing.dim}{_gib(timing.peak_bytes)}; no plan for this task{fit_note}"
        return Row(check + ": s", timing.seconds, "-" if fits else "fits in memory", None if fits else False, note)
    projected = per_sample * plan.samples
    ratio = projected / plan.seconds if plan.seconds > 0 else math.inf
    note = (f"measured {timing.seconds:.3g} s -> {projected:.3g} s per {plan.samples} samples, "
            f"plan {plan.seconds:.3g} s{_gib(timing.peak_bytes)}")
    if plan.flops:
        achieved = plan.flops * timing.samples / plan.samples / timing.seconds
        note += f", {achieved / 1e12:.3g} TFLOP/s at the plan's FLOPs"
    ok = bool(math.isfinite(ratio) and ratio <= limit and fits)
    if ratio > limit:
        note += f"; the plan's efficiency assumption is too optimistic ({ratio:.1f}x slower than planned)"
    return Row(check + ": measured/plan", ratio, f"<= {limit:g}" + ("" if fits else ", fits"), ok, note + fit_note)


def check_hvp_chunks(device: torch.device | str, tasks: list[str] | None = None, samples: int | None = None,
                     plan_path: str | os.PathLike = DEFAULT_PLAN,
                     preset: str | os.PathLike = PAPER_PRESET) -> list[Row]:
    """One timed Hessian-vector chunk per paper task (``samples`` per chunk: the preset's chunk size
    unless given), each against the plan when ``plan_path`` has it; the plan's status is the last row."""
    device = torch.device(device)
    specs = paper_chunks(preset, tasks)
    plan, plan_status = read_plan(plan_path, specs)
    rows = []
    for spec in specs:
        try:
            timing = time_hvp_chunk(spec, device, samples)
        except Exception as err:  # noqa: BLE001 - one task's failure is its row; the other tasks still run
            traceback.print_exc()
            rows.append(Row(f"hvp chunk {spec.task}", "error", "runs", False, f"{type(err).__name__}: {err}"))
            continue
        entry = plan.get(spec.task)
        if entry is not None and samples is not None and "chunk" in entry.column.lower():
            entry = None  # a per-chunk plan says nothing of a chunk of another size
        rows.append(chunk_row(spec, timing, entry))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    rows.append(Row("plan", "read" if plan else "missing", "-", None, plan_status))
    return rows


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------


def no_device_line() -> str:
    build = "CPU build?" if torch.version.cuda is None else f"CUDA {torch.version.cuda} build, no GPU visible"
    return f"check-gpu: no CUDA device visible to torch {torch.__version__} ({build}); nothing to check"


def run_checks(device: torch.device, skip_smoke: bool = False, timeout: float = SMOKE_TIMEOUT_S,
               plan_path: str | os.PathLike = DEFAULT_PLAN) -> list[Row]:
    """Checks a (unless skipped), b and c on ``device``, each printed as it finishes."""
    rows: list[Row] = []
    stages = [] if skip_smoke else [("smoke preset", lambda: check_smoke(device, timeout))]
    stages += [("float64 agreement with the CPU", lambda: check_agreement(device)),
               ("one Hessian-vector chunk per paper task", lambda: check_hvp_chunks(device, plan_path=plan_path))]
    for title, stage in stages:
        print(f"check-gpu: {title} ...", flush=True)
        t0 = time.perf_counter()
        try:
            rows += stage()
        except Exception as err:  # noqa: BLE001 - a check that crashes is a failed row; the others still run
            traceback.print_exc()
            rows.append(Row(title, "error", "runs", False, f"{type(err).__name__}: {err}"))
        print(f"check-gpu: {title}: {time.perf_counter() - t0:.1f} s", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m prunelimit.gpu_check",
        description="Check a GPU machine for the paper preset: (a) the smoke preset with device=cuda, "
                    "(b) float64 Hessian-vector products and a 64-step Lanczos run against the CPU (relative "
                    f"difference <= {AGREEMENT_TOL:g}), (c) one timed Hessian-vector chunk per paper task "
                    f"against results/paper/plan.csv (fails beyond {PLAN_SLOWDOWN_LIMIT:g}x the plan). Without "
                    "CUDA: one line, exit 0. Exit 1 when a check fails.")
    parser.add_argument("--skip-smoke", action="store_true", help="skip (a), the smoke preset run (minutes)")
    parser.add_argument("--timeout", type=float, default=SMOKE_TIMEOUT_S, metavar="SECONDS",
                        help=f"limit of the smoke run, which fails beyond it (default {SMOKE_TIMEOUT_S})")
    parser.add_argument("--plan", default=str(DEFAULT_PLAN), metavar="CSV",
                        help="the plan to set the chunk times against (default: results/paper/plan.csv)")
    args = parser.parse_args(argv)
    if args.timeout <= 0:
        parser.error("--timeout must be positive")
    device = resolve_device("auto")
    if device.type != "cuda":
        print(no_device_line())
        return 0
    index = device.index if device.index is not None else torch.cuda.current_device()
    print(f"check-gpu: {torch.cuda.get_device_name(index)}, torch {torch.__version__}, CUDA {torch.version.cuda}",
          flush=True)
    t0 = time.perf_counter()
    rows = run_checks(device, args.skip_smoke, args.timeout, args.plan)
    print(format_table(rows))
    bad = failed(rows)
    for row in bad:
        print(f"check-gpu: FAIL {row.check}: {row.note}")
    print(f"check-gpu: {len(rows) - len(bad)} of {len(rows)} rows pass, {time.perf_counter() - t0:.0f} s")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
