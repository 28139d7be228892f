"""The paper preset's cost, measured: FLOPs and memory of every job, GPU-hours on an A100 and an H100.

    .venv/bin/python benchmarks/paper_scale.py [--quick] [--preset workflow/presets/paper.yaml] [--out results/paper]
                                              [--device meta|cpu|cuda]

Writes ``<out>/plan.csv`` (one row per job of the preset's DAG) and ``<out>/plan.md`` (per rule, per
task, totals, the jobs that needed a fix, the SLURM resources the plan implies, the assumptions), and
prints the per-task table. docs/paper_scale.md explains how to read it.

Measured, per paper task, with the real architecture (``prunelimit.models.build_model``) at its real
input shape and class count, per sample:

- FLOPs (``torch.utils.flop_counter.FlopCounterMode``), split into convolution FLOPs and matrix
  multiplications: F_fwd of an eval forward; F_step of a training step (train-mode forward, loss,
  backward); F_hvp of one Hessian-vector product through :class:`prunelimit.hessian.HessianOperator`
  (two chunks of one sample: each forward, gradient with graph, backward; BatchNorm folded as the
  pipeline does). These are functions of the shapes alone, so they are counted on the meta device
  (no arithmetic: seconds). Without ``--quick`` a real 1-sample chunk on CPU tensors is counted too and
  must equal the meta count.
- Memory of one HVP chunk: on CPU an estimate, A_hvp, the bytes of every tensor autograd saves
  (``torch.autograd.graph.saved_tensors_hooks``, each storage once, the weights and the data set
  left out) while the operator builds one chunk's forward and ``create_graph`` gradient, at 1 and 2
  samples: the slope is per sample, the intercept fixed. The peak of a chunk of c samples is planned
  as 11·P·4 bytes (weights-sized buffers: gradient with graph, folded weights, product, running sum)
  + intercept + (ACTIVATION_FACTOR·A_hvp + 2 input samples)·c (the activation gradients live beside the
  saved tensors; the input is copied).
  Without ``--quick`` each task's real chunks of 1 and 3 samples (in a fresh process) are checked against
  that plan by the process's peak resident memory (``ru_maxrss``): the peak at 3 samples and its growth
  per sample. With ``--device cuda`` the chunk's peak is
  instead measured, as the difference of ``torch.cuda.max_memory_allocated`` at 2 and 4 samples
  (slope and intercept), and used as is. A_step (saved tensors of a training forward, per sample) is
  measured the same way; A_eval is the largest input + output of one module in an eval forward.
- Bytes of every buffer: the Lanczos basis (K·D·4, K = min(max_iter, D) from the task's hessian
  settings, D the prunable weights or all parameters as ``hessian.params`` says), the model (P·4),
  SGD's momentum (P·4), the data set as float32 device tensors (``prunelimit.data.load_tensors``).

Work per job (N training and N_t test samples, E epochs, B batch; ⌈N/B⌉ batches an epoch):

- train, train_reseeded: E·N·F_step + (3N + N_t)·F_fwd (final train and test evaluation, ε over the
  training loader and over clean data); revive_dead_units and recalibrate_batchnorm add N·F_fwd each.
- hessian_rows: L·N·F_hvp, L = theory.row_levels rows, one product each.
- slq: R·K·N·F_hvp, R = n_runs, K the step cap: the doubling from n_iter needs three values to see two
  stable doublings (128, 256, 512 with the paper's settings), so the cap is also the usual count.
  Plus the reorthogonalisation: per step j two passes, each reading the j-row basis twice,
  4·R·K(K+1)·D·4 bytes in all, at the memory bandwidth of wherever the basis lives.
- theory: P_ε·N·F_fwd, P_ε = theory.epsilon_partitions (ε's band; the prediction itself is CPU arithmetic).
- magnitude_scaling: S·G_s·N_t·F_fwd (S scales, G_s = theory.scaling_grid sweep points each).
- sweep, sweep_dense, seed_sweep, regime_sweep: G·N_t·F_fwd + ⌈G/T⌉·N·F_fwd (prune.grid G, train_every T).
- iterative: 2 arms × (rounds + 1 predictions of [hessian_rows + slq + (P_ε + 1)·N·F_fwd] + rounds·e·N·F_step
  + (rounds + 1)·(N + 2N_t)·F_fwd), e = iterative.retrain_epochs.
- baseline (smart_ratio): E·N·F_step + (N + N_t)·F_fwd; (rare_gems): 2E·N·F_step (scores, then weights)
  + (N + 2N_t)·F_fwd.
- baseline_imp: (E_dense + Σ_rounds (E − e_rw))·N·F_step + rounds·N_t·F_fwd + targets·(N + N_t)·F_fwd:
  rounds from :func:`prunelimit.baselines.imp.round_densities` (to the top sparsity at
  fraction_per_round), E_dense = e_rw when IMP takes the train rule's dense model over (seed = the
  task's seed), else E.
- seed_prediction, regime_prediction: hessian_rows + slq + theory in one job.
- oneshot (M methods, S sparsities, N = the task's Fisher samples, D prunable weights in B = ⌈D/b⌉ blocks of
  b = min(block_size, D)): N·F_step in ⌈N/64⌉ vmap chunks (the per-sample gradients; none for mp alone) +
  M·S·(N + N_t)·F_fwd (every pruned copy evaluated), and float64 FLOPs on the host (prune_model moves w and
  G to the CPU), per block: the Fisher inverse once per distinct damp of wf and cbs, 3·N²·b + N³/3; a kept
  set's inverse U = N²·b + N³ per sparsity for wf's joint update (else 4·N·b) and for cbs's final update;
  cbs per sparsity (⌈W/25⌉ + 1)·U rebuilds + W·N·(2c² + 2N) swaps (W swaps, c candidates); chita 4·N²·b
  once (σ_max) + per sparsity iters·4·N·b + N²·b + N³/3; plus HOST_SWAP_S a swap and HOST_IHT_S an IHT step
  (the Python and elementwise work the FLOPs miss). With N >= b the code inverts the dense b×b
  matrix instead: there N² reads min(N, b)·N and N³ min(N, b)³ (no paper task: its swaps are not modelled).

Time on a GPU: F_conv/(peak_conv·η_conv) + F_mm/(peak_fp32·η_fp32) + batches·LAUNCH_S + reorth bytes /
bandwidth (+ oneshot's host FLOPs / HOST_FLOP_RATE and step seconds). The code sets no precision flag
(``allow_tf32`` and ``set_float32_matmul_precision`` appear nowhere in src/), so PyTorch's defaults hold:
cuDNN convolutions may use TF32 tensor cores (``torch.backends.cudnn.allow_tf32``, default True) and matrix
multiplications run in FP32 on CUDA cores (``torch.backends.cuda.matmul.allow_tf32``, default False); the
flags read at run time pick each peak.

GPU memory of a job: CUDA_RESERVE_BYTES + weights and buffers + the data set + the job's own (training:
gradients, momentum, the data-gradient masks, ACTIVATION_FACTOR·B·A_step; products: the chunk and, where
``basis_placement`` keeps it there, the basis; sweeps: 1024·A_eval + 16·D for the pruner's copies; oneshot:
per_sample_gradients' peak, one chunk of 64 at a time (each chunk goes to the host as it is done):
64·ACTIVATION_FACTOR·A_step + 16·64·D (its per-layer gradients, their concatenation and its float64 copy;
16.2 bytes per N·D by ru_maxrss on CPU for the whole-matrix version). Host memory: HOST_BASE_BYTES +
HOST_LOAD_FACTOR × the float32 data set (loading it) + 2·P·4 (the checkpoint read) + the basis where it lives
there; oneshot adds 8·N·D (float64 gradients) +
N·D (their finiteness mask) + 2·N·b·8 (a block's column copies; 1.2·N·b·8 measured on MLPNet) +
(B + 3)·min(N, b)²·8 (every block's cached Cholesky factor and one block's Woodbury factors) + 4·D·8.
The basis goes where :func:`prunelimit.lanczos.basis_placement` (the code's own rule for
``hessian.basis_device``) puts it, given the GPU memory left after the reserve, the model and the data set. A
job whose GPU memory exceeds the card's is flagged; for a product chunk the largest CHUNK_CHOICES value that
fits is named.

Without ``--quick``, also: the job counts per rule against ``snakemake -n`` on the same preset, and the
data set loading factor on a CIFAR-sized synthetic file. ``--quick`` (the test suite) skips the real
tensors and those checks; its plan is the same (every number it uses comes from the meta device).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from prunelimit.architectures import dataset_shape, parameter_count  # noqa: E402
from prunelimit.baselines.imp import round_densities  # noqa: E402
from prunelimit.config import (  # noqa: E402
    main_study_tasks,
    regime_multiplier,
    regime_variant,
    task_spec,
    validate_config,
)
from prunelimit.datasets import REGISTRY as DATASET_REGISTRY  # noqa: E402
from prunelimit.hessian import HessianOperator  # noqa: E402
from prunelimit.hessian_rows import ROW_BATCH  # noqa: E402
from prunelimit.io import atomic_path  # noqa: E402
from prunelimit.lanczos import BASIS_GPU_SHARE, basis_placement  # noqa: E402
from prunelimit.models import build_model  # noqa: E402
from prunelimit.settings import Settings  # noqa: E402

PRESET = ROOT / "workflow" / "presets" / "paper.yaml"
PROFILE = ROOT / "workflow" / "profiles" / "slurm" / "config.yaml"
GB = 1e9


# ---------------------------------------------------------------------------------------------
# The cards (vendor datasheets) and the assumptions
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gpu:
    name: str
    fp32: float  # FLOP/s, dense FP32 on CUDA cores
    tf32: float  # FLOP/s, dense TF32 on tensor cores (the datasheets' "with sparsity" figure halved)
    bandwidth: float  # bytes/s of GPU memory
    memory: float  # bytes


GPUS = {
    # NVIDIA A100 Tensor Core GPU datasheet (A100 80GB SXM): FP32 19.5 TFLOPS; TF32 Tensor Core 156 TFLOPS
    # (312 with sparsity); GPU memory 80 GB HBM2e at 2,039 GB/s.
    "a100": Gpu("A100 80GB SXM", 19.5e12, 156e12, 2.039e12, 80e9),
    # NVIDIA H100 Tensor Core GPU datasheet (H100 SXM): FP32 67 TFLOPS; TF32 Tensor Core 989 TFLOPS with
    # sparsity (494.5 dense); GPU memory 80 GB HBM3 at 3.35 TB/s.
    "h100": Gpu("H100 SXM 80GB", 67e12, 494.5e12, 3.35e12, 80e9),
}

# Assumptions (stated in plan.md): the sustained share of each peak for these small-image workloads.
ETA_FP32 = 0.3  # FP32 GEMMs of batch 128 to 2,500 rows on CUDA cores
ETA_TF32 = 0.1  # cuDNN TF32 convolutions on 32x32 and 64x64 maps, with the BatchNorm/ReLU memory traffic
#                 that no FLOP count sees (about 16 TFLOP/s on an A100, i.e. ~11 s a ResNet18 CIFAR epoch)
ETA_BANDWIDTH = 0.6  # matrix-vector products over the Lanczos basis in GPU memory
HOST_BANDWIDTH = 20e9  # bytes/s: the same products over a basis in host memory, with the job's CPU threads
LAUNCH_S = 3e-3  # per training step, evaluation batch or product chunk: Python, kernel launches, the
#                  loss.item() every step waits on (it dominates the fully connected nets' epochs)
ACTIVATION_FACTOR = 2.5  # peak / saved-tensor bytes of a chunk, per sample: the activation gradients live
#                          beside the saved tensors (ru_maxrss of real CPU chunks: 0.8x VGG16, 1.5x ResNet50,
#                          2.2x AlexNet of the saved bytes per sample; checked per task without --quick)
HVP_PARAM_COPIES = 11  # weights-sized buffers of a product (gradient with graph, folded weights, result, sum,
#                       the CPU's packed GEMM operands): real CPU chunks held 4.7 (AlexNet) to 10.4 (FC5) copies
INPUT_COPIES = 2  # input-sized copies per sample of a chunk (the CPU's weight-gradient GEMMs transpose the
#                   input: FC5's real chunks grew by 40 KB a sample, 3.3x its saved tensors)
CUDA_RESERVE_BYTES = 1.5e9  # CUDA context and cuDNN workspaces, outside what tensors take
HOST_FLOP_RATE = 1e11  # float64 FLOP/s of the one-shot algebra (formulas above) on the job's CPU threads:
#                        uncalibrated (one thread of a 2-core dev machine did 1.7e10 to 3.2e10 on MLPNet blocks)
HOST_SWAP_S = 2e-3  # per CBS swap beyond its FLOPs (~20 passes over the c x c gains, ~40 torch calls) and
HOST_IHT_S = 5e-4  # per IHT step (a top-k sort of b weights): uncalibrated; one dev thread took 3.4-4.3 ms a
#                    swap and 0.7 ms a step in all at N = 200, c = 256, b = 2000 (each block's swaps at the cap)
GRAD_CHUNK = 64  # per_sample_gradients' vmap chunk
CBS_REFRESH = 25  # _woodbury_swaps rebuilds L⁻¹ from scratch every 25 swaps
HOST_BASE_BYTES = 3e9  # resident memory of a job's Python with torch and the CUDA runtime loaded
HOST_BASE_CPU_BYTES = 1e9  # the same without CUDA (the dataset rule)
LONG_JOB_H = 48  # a common partition time limit: longer jobs are listed in plan.md
HOST_LOAD_FACTOR = 3.0  # load_tensors' peak / the float32 data set (1.85x-2.47x on synthetic CIFAR-shaped files)
EVAL_BATCH = 1024  # prunelimit.train.evaluate
EVAL_HELD_FACTOR = 1.5  # an eval forward holds a module's input and output, and a residual block's input
CHUNK_CHOICES = (2500, 2000, 1250, 1000, 500, 250, 200, 100, 50, 25, 10)  # divide 50,000 and 100,000
CHUNK_HEADROOM = 0.85  # a chunk may take this share of what the GPU has left
CHECK_FLOPS = 2e11  # arithmetic of each real chunk the CPU check runs (seconds on two cores)
CHECK_SLACK_BYTES = 150e6  # a check's excess over the plan that is the process's first product (allocator, BLAS
#                            and OpenMP buffers: 84 and 91 MB above MLPNet's 3 MB and ResNet20's 26 MB chunks)

# SLURM margins over the plan (workflow/profiles/slurm/config.yaml states them too)
RUNTIME_MARGIN = 2.0  # x the A100 projection (the slower card), then rounded up to whole hours
HOST_MEMORY_MARGIN = 1.5  # x the planned host memory, rounded up to a whole GB
CPUS_GPU_JOB = 4
CPUS_HOST_BASIS = 8  # jobs whose basis may sit in host memory: the reorthogonalisation runs on their threads
CPUS_HOST_ALGEBRA = 8  # oneshot: its float64 Fisher algebra runs on the job's threads (HOST_FLOP_RATE)

# Paper data sets: training / test samples and bytes of the official download (the dataset registry's)
SAMPLES = {d.name: d.samples for d in DATASET_REGISTRY.values() if d.samples is not None}
ARCHIVE_BYTES = {d.name: d.archive_bytes for d in DATASET_REGISTRY.values() if d.archive_bytes is not None}

GPU_RULES_WITH_PRODUCTS = ("hessian_rows", "slq", "iterative", "seed_prediction", "regime_prediction",
                           "exact_spectrum", "regime_exact_spectrum")


# ---------------------------------------------------------------------------------------------
# Measuring one architecture
# ---------------------------------------------------------------------------------------------


class _ShapeOnly(TorchDispatchMode):
    """``.item()`` and ``bool()`` of a meta tensor answer 1.0 / True, so the operator's finite-loss check
    passes on the meta device; every other step is shapes only."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta:
            return True if args[0].dtype == torch.bool else 1.0
        return func(*args, **(kwargs or {}))


@dataclass
class Flops:
    conv: float = 0.0  # per sample
    mm: float = 0.0

    @property
    def total(self) -> float:
        return self.conv + self.mm

    def __mul__(self, k: float) -> Flops:
        return Flops(self.conv * k, self.mm * k)

    __rmul__ = __mul__

    def __add__(self, other: Flops) -> Flops:
        return Flops(self.conv + other.conv, self.mm + other.mm)


def _count(fn, samples: int) -> Flops:
    """FLOPs of ``fn`` per sample, convolutions apart from the rest."""
    with FlopCounterMode(display=False) as counter:
        fn()
    out = Flops()
    for op, n in counter.get_flop_counts().get("Global", {}).items():
        if "convolution" in str(op):
            out.conv += n / samples
        else:
            out.mm += n / samples
    return out


def _saved_bytes(fn, exclude: set[int]) -> int:
    """Bytes of the storages autograd saves while ``fn`` runs, each once; ``exclude``: storages left out."""
    seen: dict[int, int] = {}

    def pack(t):
        s = t.untyped_storage()
        if s._cdata not in exclude:
            seen[s._cdata] = s.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def _storages(*tensors) -> set[int]:
    return {t.untyped_storage()._cdata for t in tensors}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kilobytes


@dataclass
class Architecture:
    """What one (model, input shape, classes) costs, per sample unless said."""

    model: str
    model_args: dict
    in_shape: tuple[int, int, int]
    classes: int
    params: int  # every parameter
    prunable: int  # conv and linear weights
    buffer_bytes: int  # BatchNorm running statistics
    fwd: Flops
    step: Flops
    hvp: Flops
    hvp_slope: float  # bytes per sample of a product chunk's peak
    hvp_fixed: float  # bytes of a chunk's peak independent of its size
    step_saved: float  # saved-tensor bytes of a training forward, per sample
    eval_held: float  # bytes an eval forward holds, per sample
    memory_source: str
    checks: dict = field(default_factory=dict)

    def chunk_bytes(self, samples: int) -> float:
        return self.hvp_fixed + self.hvp_slope * samples


def _inputs(in_shape, classes, n, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, *in_shape, generator=g).to(device)
    y = torch.randint(0, classes, (n,), generator=g).to(device)
    return x, y


def _build(model: str, model_args: dict, in_shape, classes, device) -> torch.nn.Module:
    with torch.device(device):
        return build_model(model, in_shape, classes, seed=0, **model_args)


def _eval_held(net: torch.nn.Module, x: torch.Tensor) -> float:
    """EVAL_HELD_FACTOR × the largest input + output bytes of one leaf module in an eval forward."""
    largest = [0]

    def hook(_module, inputs, output):
        size = sum(t.nbytes for t in inputs if isinstance(t, torch.Tensor)) + output.nbytes
        largest[0] = max(largest[0], size)

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    net.eval()
    with torch.no_grad():
        net(x)
    for h in handles:
        h.remove()
    return EVAL_HELD_FACTOR * largest[0] / len(x)


def measure(model: str, model_args: dict, in_shape, classes: int, params: str, device: str = "meta") -> Architecture:
    """The per-sample FLOPs and memory of one architecture (see the module docstring)."""
    dev = torch.device(device)
    scalars = _ShapeOnly() if dev.type == "meta" else _NoMode()
    net = _build(model, model_args, in_shape, classes, dev)
    n_params = sum(p.numel() for p in net.parameters())
    n_prunable = parameter_count(model, in_shape, classes, **model_args).prunable
    buffers = sum(b.nbytes for b in net.buffers())
    weights = _storages(*net.parameters())
    with scalars:
        x, y = _inputs(in_shape, classes, 2, dev)
        net.eval()
        fwd = _count(lambda: net(x), 2)
        eval_held = _eval_held(net, x)

        def step(xs, ys):
            net.train()
            F.cross_entropy(net(xs), ys).backward()
            net.zero_grad(set_to_none=True)

        step_flops = _count(lambda: step(x, y), 2)
        x1, y1 = _inputs(in_shape, classes, 1, dev)
        x2, y2 = x, y
        # a training forward of 2 and 4 samples (train-mode BatchNorm needs 2): the slope is per sample
        x4, y4 = _inputs(in_shape, classes, 4, dev)
        saved_2 = _saved_bytes(lambda: step(x, y), weights | _storages(x, y))
        saved_4 = _saved_bytes(lambda: step(x4, y4), weights | _storages(x4, y4))
        step_saved = (saved_4 - saved_2) / 2
        net.eval()
        # one product through the pipeline's operator: two chunks of one sample
        op = HessianOperator(net, x2, y2, params=params, chunk_size=1)
        v = torch.ones(op.dim, device=dev)
        hvp = _count(lambda: op.matvec(v), 2)
        # one chunk's graph kept alive (the cached operator): its saved tensors at 1 and 2 samples
        held = []

        def graph(xs, ys):
            held.append(HessianOperator(net, xs, ys, params=params, chunk_size=0, skip_dead_units=False))

        one = _saved_bytes(lambda: graph(x1, y1), weights | _storages(x1, y1))
        two = _saved_bytes(lambda: graph(x2, y2), weights | _storages(x2, y2))
        held.clear()
    saved_slope = two - one
    input_bytes = math.prod(in_shape) * 4
    return Architecture(model, dict(model_args), tuple(in_shape), int(classes), n_params, n_prunable, buffers,
                        fwd, step_flops, hvp, hvp_slope=ACTIVATION_FACTOR * saved_slope + INPUT_COPIES * input_bytes,
                        hvp_fixed=HVP_PARAM_COPIES * n_params * 4 + max(0, one - saved_slope),
                        step_saved=step_saved, eval_held=eval_held,
                        memory_source=f"saved tensors x {ACTIVATION_FACTOR:g} (meta device)",
                        checks={"hvp_saved_per_sample": saved_slope})


class _NoMode:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def measure_cuda_chunk(arch: Architecture, params: str) -> Architecture:
    """With CUDA: a chunk's peak measured (max_memory_allocated at 2 and 4 samples) replaces the estimate."""
    dev = torch.device("cuda")
    net = _build(arch.model, arch.model_args, arch.in_shape, arch.classes, dev).eval()
    peaks = {}
    for n in (2, 4):
        x, y = _inputs(arch.in_shape, arch.classes, n, dev)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        op = HessianOperator(net, x, y, params=params, chunk_size=0, skip_dead_units=False)
        op.matvec(torch.ones(op.dim, device=dev))
        torch.cuda.synchronize()
        peaks[n] = torch.cuda.max_memory_allocated() - before
        del op
        torch.cuda.empty_cache()
    slope = (peaks[4] - peaks[2]) / 2
    arch.hvp_slope, arch.hvp_fixed = slope, max(0.0, peaks[2] - 2 * slope)
    arch.memory_source = "torch.cuda.max_memory_allocated (2 and 4 samples)"
    return arch


def real_cpu_check(model: str, model_args: dict, in_shape, classes: int, params: str, samples: int) -> dict:
    """In a fresh process: one real chunk of ``samples`` samples, its graph (the cached operator) and one
    product: the process's peak resident memory above where it started, and the FLOPs per sample."""
    torch.set_num_threads(1)  # two threads thrash on a loaded two-core machine
    net = _build(model, model_args, tuple(in_shape), classes, "cpu").eval()
    x, y = _inputs(tuple(in_shape), classes, samples, "cpu")
    start = _rss_bytes()

    def chunk():
        op = HessianOperator(net, x, y, params=params, chunk_size=0, skip_dead_units=False)
        op.matvec(torch.ones(op.dim))

    flops = _count(chunk, samples)
    return {"rss_peak": _peak_rss_bytes() - start, "hvp_conv": flops.conv, "hvp_mm": flops.mm}


def check_samples(arch: Architecture) -> int:
    """The real chunk of the CPU check: as many samples as make its per-sample part match its fixed part,
    within CHECK_FLOPS of arithmetic (and at least 2)."""
    balanced = arch.hvp_fixed / max(arch.hvp_slope, 1.0)
    return int(max(2, min(balanced, CHECK_FLOPS / max(arch.hvp.total, 1.0))))


def measure_load_factor(samples: int = 12_000) -> float:
    """load_tensors' peak resident memory over the float32 size of a synthetic CIFAR-shaped file."""
    import numpy as np

    from prunelimit.io import save_npz

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.npz"
        test = samples // 5
        save_npz(path, x_train=rng.integers(0, 256, (samples, 3, 32, 32), dtype=np.uint8),
                 y_train=rng.integers(0, 10, samples), x_test=rng.integers(0, 256, (test, 3, 32, 32), dtype=np.uint8),
                 y_test=rng.integers(0, 10, test), mean=np.full(3, 0.5, np.float32), std=np.full(3, 0.25, np.float32),
                 num_classes=np.int64(10))
        code = (f"import sys, resource, os; sys.path.insert(0, {str(ROOT / 'src')!r}); "
                "from prunelimit.data import load_tensors; import torch, gc; gc.collect(); "
                "f = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024; "
                "r = lambda: int(open('/proc/self/statm').read().split()[1]) * os.sysconf('SC_PAGE_SIZE'); "
                f"b = max(f(), r()); t = load_tensors({str(path)!r}, 'cpu'); print(f() - b)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300)
    return int(out.stdout.strip().splitlines()[-1]) / ((samples + samples // 5) * 3 * 32 * 32 * 4)


# ---------------------------------------------------------------------------------------------
# The jobs of a preset (as workflow/rules/*.smk build them)
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    rule: str
    task: str  # "" for the dataset rule
    name: str  # the wildcards, e.g. "l1", "seed1", "s0.9_seed2"
    variant: str = ""  # trained variant the job reads or writes
    seed: int | None = None
    extra: dict = field(default_factory=dict)


def load_preset(path: str | os.PathLike) -> dict:
    config = yaml.safe_load(Path(path).read_text())
    validate_config(config)
    return config


def enumerate_jobs(config: dict) -> list[Job]:
    """Every job of the preset's default target that runs on a cluster node (the localrule tables and
    figures excluded), following workflow/rules/common.smk and the rule files."""
    settings = Settings.from_config(config)
    variants = list(config["variants"])
    theory_variant = "l1" if "l1" in variants else variants[0]
    tasks = main_study_tasks(config)
    own_seed = {t: int(task_spec(config, t, theory_variant)["train"]["seed"]) for t in config["tasks"]}
    claim = [int(s) for s in config["claim_seeds"]] if theory_variant == "l1" else []
    others = {t: [s for s in claim if s != own_seed[t]] for t in config["tasks"]}
    regime, base, tv, it, one = settings.regime, settings.baselines, settings.tv_distance, settings.iterative, \
        settings.oneshot
    starts = [(t, v) for t in one.tasks for v in one.starts]  # the one-shot comparison's models
    points = [regime_variant(m) for m in regime.l1_multipliers]

    def model_variant(point):
        shared = {0.0: "dense", 1.0: "l1"}.get(regime_multiplier(point))
        return shared if shared in variants else point

    def dense_takeover(task, seed):
        if "dense" not in variants:
            return False
        spec = task_spec(config, task, "dense")["train"]
        mine = dict(spec)
        if base.epochs:
            mine["epochs"] = int(base.epochs)
        return {**mine, "seed": int(seed)} == spec

    jobs: list[Job] = []
    for d in sorted({config["tasks"][t]["dataset"] for t in config["tasks"]}):
        jobs.append(Job("dataset", "", d, extra={"dataset": d}))
    trained = {(t, v) for t in tasks for v in variants}
    trained |= {(t, model_variant(p)) for t in regime.tasks for p in points}
    trained |= {(t, theory_variant) for t in list(it.tasks) + list(tv.tasks) + list(one.tasks)} | set(starts)
    if "dense" in variants:
        trained |= {(t, "dense") for t in base.tasks}
    for t, v in sorted(trained, key=lambda tv_: (list(config["tasks"]).index(tv_[0]), tv_[1])):
        jobs.append(Job("train", t, v, variant=v))
    reseeded = {(t, "l1", s) for t in tv.tasks for s in tv.seeds} | {(t, "l1", s) for t in tasks for s in others[t]}
    reseeded |= {(t, v, int(s)) for t, v in starts for s in one.seeds if int(s) != own_seed[t]}
    for t, v, s in sorted(reseeded, key=lambda j: (list(config["tasks"]).index(j[0]), j[1], j[2])):
        jobs.append(Job("train_reseeded", t, f"{v}_seed{s}", variant=v, seed=s))
    lomp = list(base.tasks) if "lomp" in base.methods else []
    swept = list(dict.fromkeys(tasks + lomp))
    for t in tasks:
        for rule in ("hessian_rows", "slq", "theory", "magnitude_scaling"):
            jobs.append(Job(rule, t, theory_variant, variant=theory_variant))
        if settings.hessian(t).exact_max_params >= _dim(config, t):
            jobs.append(Job("exact_spectrum", t, theory_variant, variant=theory_variant))
    for t in [t for t in one.tasks if t not in tasks]:  # the lomp_vs_sota figure marks their predicted limit
        jobs += [Job(rule, t, theory_variant, variant=theory_variant) for rule in ("hessian_rows", "slq", "theory")]
    for t in swept:
        jobs.append(Job("sweep", t, theory_variant, variant=theory_variant))
    if "dense" in variants and theory_variant != "dense":
        for t in tasks:
            jobs.append(Job("sweep_dense", t, "dense", variant="dense"))
    for t in it.tasks:
        jobs.append(Job("iterative", t, theory_variant, variant=theory_variant))
    for t in base.tasks:
        for method in base.methods:
            if method in ("rare_gems", "smart_ratio"):
                for s in base.sparsities:
                    for seed in base.seeds:
                        jobs.append(Job("baseline", t, f"{method}_s{float(s):g}_seed{seed}", variant="dense",
                                        seed=int(seed), extra={"method": method, "sparsity": float(s)}))
        if "imp" in base.methods:
            for seed in base.seeds:
                jobs.append(Job("baseline_imp", t, f"seed{seed}", variant="dense", seed=int(seed),
                                extra={"takes_over_dense": dense_takeover(t, seed)}))
    for t in regime.tasks:
        small = settings.hessian(t).exact_max_params >= _dim(config, t)
        for p in points:
            v = model_variant(p)
            if not (t in tasks and v == "l1"):  # the main study's prediction otherwise
                jobs.append(Job("regime_prediction", t, p, variant=v))
                if small:
                    jobs.append(Job("regime_exact_spectrum", t, p, variant=v))
            if not (t in tasks and v in ("l1", "dense")):
                jobs.append(Job("regime_sweep", t, p, variant=v))
    for t in tasks:
        for s in others[t]:
            jobs.append(Job("seed_prediction", t, f"seed{s}", variant="l1", seed=s))
            jobs.append(Job("seed_sweep", t, f"seed{s}", variant="l1", seed=s))
    for t, v in starts:
        jobs += [Job("oneshot", t, f"{v}_seed{s}", variant=v, seed=int(s), extra=one.fisher(t)) for s in one.seeds]
    return jobs


def _dim(config: dict, task: str) -> int:
    entry = config["tasks"][task]
    in_shape, classes = dataset_shape(entry["dataset"], config["datasets"].get(entry["dataset"]))
    counts = parameter_count(entry["model"], in_shape, classes, **entry["model_args"])
    hessian = {**config["hessian"], **entry.get("hessian", {})}
    return counts.all if hessian["params"] == "all" else counts.prunable


def dag_job_counts(preset: str | os.PathLike) -> dict[str, int]:
    """Job counts per rule from ``snakemake -n`` on ``preset`` (the localrule tables and figures dropped)."""
    snakemake = Path(sys.executable).with_name("snakemake")
    proc = subprocess.run([str(snakemake), "-n", "--quiet", "rules", "--configfile", str(preset)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"snakemake -n failed: {proc.stderr.strip().splitlines()[-1:]}")
    counts = {}
    for line in proc.stdout.splitlines():
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if m and m[1] != "total" and not m[1].startswith(("table_", "fig_")) and m[1] != "all":
            counts[m[1]] = int(m[2])
    return counts


# ---------------------------------------------------------------------------------------------
# The plan
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskFacts:
    task: str
    dataset: str
    arch: Architecture
    n_train: int
    n_test: int
    dim: int  # D of the Hessian
    steps: int  # K: Lanczos steps per run at the cap
    runs: int
    chunk: int  # samples per product chunk (the preset's; 0 there = all)
    data_bytes: float  # float32 train + test tensors
    model_bytes: float
    basis_bytes: float
    basis_device: str  # "gpu" | "host"
    chunk_fits: int  # largest CHUNK_CHOICES value whose slq job fits the GPU


@dataclass
class Work:
    """A job's arithmetic and traffic: FLOPs (conv, mm), batches launched, basis bytes read, host float64 FLOPs."""

    flops: Flops = field(default_factory=Flops)
    batches: float = 0.0
    basis_read: float = 0.0
    host_flops: float = 0.0
    host_s: float = 0.0  # host seconds per step the FLOPs miss (CBS swaps, IHT steps)

    def __add__(self, other: Work) -> Work:
        return Work(self.flops + other.flops, self.batches + other.batches, self.basis_read + other.basis_read,
                    self.host_flops + other.host_flops, self.host_s + other.host_s)

    def __mul__(self, k: float) -> Work:
        return Work(self.flops * k, self.batches * k, self.basis_read * k, self.host_flops * k, self.host_s * k)

    __rmul__ = __mul__


def tf32_flags() -> dict[str, bool]:
    return {"conv": bool(torch.backends.cudnn.allow_tf32), "matmul": bool(torch.backends.cuda.matmul.allow_tf32)}


def seconds(work: Work, gpu: Gpu, basis_on_host: bool) -> float:
    flags = tf32_flags()
    conv_rate = gpu.tf32 * ETA_TF32 if flags["conv"] else gpu.fp32 * ETA_FP32
    mm_rate = gpu.tf32 * ETA_TF32 if flags["matmul"] else gpu.fp32 * ETA_FP32
    bandwidth = HOST_BANDWIDTH if basis_on_host else gpu.bandwidth * ETA_BANDWIDTH
    return (work.flops.conv / conv_rate + work.flops.mm / mm_rate + work.batches * LAUNCH_S
            + work.basis_read / bandwidth + work.host_flops / HOST_FLOP_RATE + work.host_s)


def task_facts(config: dict, task: str, arch: Architecture, gpu: Gpu) -> TaskFacts:
    entry = config["tasks"][task]
    hessian = Settings.from_config(config).hessian(task)
    n_train, n_test = SAMPLES[entry["dataset"]]
    dim = arch.params if hessian.params == "all" else arch.prunable
    steps = min(int(hessian.max_iter), dim)
    chunk = int(hessian.chunk_size) or n_train
    data = (n_train + n_test) * math.prod(arch.in_shape) * 4
    model = arch.params * 4 + arch.buffer_bytes
    basis = steps * dim * 4
    free = gpu.memory - CUDA_RESERVE_BYTES - model - data
    where = basis_placement(hessian.basis_device, torch.device("cuda", 0), basis, free_bytes=int(free))
    facts = TaskFacts(task, entry["dataset"], arch, n_train, n_test, dim, steps, int(hessian.n_runs), chunk, data,
                      model, basis, "gpu" if where.type == "cuda" else "host", 0)
    left = free - (basis if facts.basis_device == "gpu" else 0) - 3 * dim * 4 - 2 * ROW_BATCH * dim * 4
    facts.chunk_fits = next((c for c in CHUNK_CHOICES if arch.chunk_bytes(c) <= CHUNK_HEADROOM * left), 0)
    return facts


def _epochs(config: dict, task: str, variant: str) -> tuple[int, int, dict]:
    spec = task_spec(config, task, variant)["train"]
    return int(spec["epochs"]), int(spec["batch_size"]), spec


def _passes(samples: float, batch: int) -> float:
    return math.ceil(samples / batch)


def _forward(f: TaskFacts, samples: float, batch: int = EVAL_BATCH) -> Work:
    return Work(f.arch.fwd * samples, _passes(samples, batch))


def _training(f: TaskFacts, epochs: float, batch: int) -> Work:
    return Work(f.arch.step * (epochs * f.n_train), epochs * _passes(f.n_train, batch))


def _products(f: TaskFacts, count: float) -> Work:
    return Work(f.arch.hvp * (count * f.n_train), count * _passes(f.n_train, f.chunk))


def _slq(f: TaskFacts) -> Work:
    reorth = 4 * f.runs * f.steps * (f.steps + 1) * f.dim * 4  # two passes, each reading the basis twice
    return _products(f, f.runs * f.steps) + Work(basis_read=reorth)


def _prediction(config: dict, f: TaskFacts, settings: Settings) -> Work:
    """hessian_rows + slq + theory: what seed_prediction, regime_prediction and each iterative round run."""
    return _products(f, settings.theory.row_levels) + _slq(f) + _theory(f, settings)


def _theory(f: TaskFacts, settings: Settings) -> Work:
    partitions = settings.theory.epsilon_partitions if settings.theory.epsilon is None else 0
    return _forward(f, partitions * f.n_train, 128)


def _sweep(f: TaskFacts, settings: Settings) -> Work:
    grid, every = settings.prune.grid, settings.prune.train_every
    return _forward(f, grid * f.n_test) + _forward(f, (math.ceil(grid / every) if every else 0) * f.n_train)


def _oneshot(f: TaskFacts, job: Job, settings: Settings) -> Work:
    """The per-sample gradients, every pruned copy evaluated, the host's float64 algebra (module docstring)."""
    one, methods = settings.oneshot, list(settings.oneshot.methods)
    N, D, S = job.extra["samples"], f.arch.prunable, len(one.sparsities)
    b = min(job.extra["block_size"], D)
    n = min(N, b)  # N >= b: the dense b x b inverse
    kept = n * N * b + n ** 3  # a kept set's inverse: the joint OBS update, CBS's rebuilds
    steps = S * ((one.of("cbs").swaps * HOST_SWAP_S if "cbs" in methods else 0)
                 + (one.of("chita").iters * HOST_IHT_S if "chita" in methods else 0))
    block = len({one.of(m).damp for m in ("wf", "cbs") if m in methods}) * (3 * n * N * b + n ** 3 / 3)
    if "wf" in methods:
        block += S * (kept if one.of("wf").joint else 4 * N * b)
    if "cbs" in methods:
        cbs = one.of("cbs")
        c = b if cbs.candidates is None else min(cbs.candidates, b)
        block += S * ((math.ceil(cbs.swaps / CBS_REFRESH) + 2) * kept + cbs.swaps * N * (2 * c * c + 2 * N))
    if "chita" in methods:
        block += 4 * n * N * b + S * (one.of("chita").iters * 4 * N * b + n * N * b + n ** 3 / 3)
    grads = Work(f.arch.step * N, math.ceil(N / GRAD_CHUNK)) if set(methods) - {"mp"} else Work()
    return (grads + (len(methods) * S) * (_forward(f, f.n_train) + _forward(f, f.n_test))
            + Work(host_flops=math.ceil(D / b) * block, host_s=math.ceil(D / b) * steps))


def job_work(config: dict, job: Job, f: TaskFacts, settings: Settings) -> Work:
    rule = job.rule
    if rule in ("train", "train_reseeded"):
        epochs, batch, spec = _epochs(config, job.task, job.variant)
        extra = int(bool(spec.get("revive_dead_units"))) + int(bool(spec.get("recalibrate_batchnorm")))
        return _training(f, epochs, batch) + _forward(f, (3 + extra) * f.n_train + f.n_test)
    if rule == "hessian_rows":
        return _products(f, settings.theory.row_levels)
    if rule == "slq":
        return _slq(f)
    if rule in ("exact_spectrum", "regime_exact_spectrum"):
        return _products(f, f.dim)
    if rule == "theory":
        return _theory(f, settings)
    if rule == "magnitude_scaling":
        return _forward(f, len(settings.theory.scales) * settings.theory.scaling_grid * f.n_test)
    if rule in ("sweep", "sweep_dense", "seed_sweep", "regime_sweep"):
        return _sweep(f, settings)
    if rule in ("seed_prediction", "regime_prediction"):
        return _prediction(config, f, settings)
    if rule == "oneshot":
        return _oneshot(f, job, settings)
    if rule == "iterative":
        it = settings.iterative
        _, batch, _ = _epochs(config, job.task, "l1")
        arm = ((it.rounds + 1) * (_prediction(config, f, settings) + _forward(f, f.n_train, 128))
               + _training(f, it.rounds * it.retrain_epochs, batch)
               + _forward(f, (it.rounds + 1) * (f.n_train + 2 * f.n_test)))
        return arm * 2  # without and with l2
    epochs, batch, _ = _epochs(config, job.task, "dense")
    if settings.baselines.epochs:
        epochs = int(settings.baselines.epochs)
    if rule == "baseline":
        if job.extra["method"] == "rare_gems":
            return _training(f, 2 * epochs, batch) + _forward(f, f.n_train + 2 * f.n_test)
        return _training(f, epochs, batch) + _forward(f, f.n_train + f.n_test)
    if rule == "baseline_imp":
        imp = settings.baselines.of("imp")
        schedule = round_densities(settings.baselines.sparsities, imp.fraction_per_round)
        rewind = int(imp.rewind_epoch)
        dense = rewind if job.extra["takes_over_dense"] else epochs
        targets = len(settings.baselines.sparsities)
        return (_training(f, dense + len(schedule) * (epochs - rewind), batch)
                + _forward(f, len(schedule) * f.n_test + targets * (f.n_train + f.n_test) + f.n_test))
    raise ValueError(f"no cost model for rule {rule}")


def gpu_memory(job: Job, f: TaskFacts, config: dict) -> float:
    """Peak GPU bytes of a job (module docstring)."""
    a = f.arch
    base = CUDA_RESERVE_BYTES + f.model_bytes + f.data_bytes
    train_bytes = 0.0
    if job.rule in ("train", "train_reseeded", "baseline", "baseline_imp", "iterative"):
        variant = job.variant if job.rule.startswith("train") else ("l1" if job.rule == "iterative" else "dense")
        _, batch, _ = _epochs(config, job.task, variant)
        # gradients and momentum (P each), data-gradient masks (1 byte per weight), the L1 hook's temporaries
        train_bytes = 2 * a.params * 4 + a.prunable + 2 * a.prunable * 4 + ACTIVATION_FACTOR * batch * a.step_saved
        if job.rule == "baseline":  # Rare Gems: scores, their gradient and momentum, the initial copy
            train_bytes += 4 * a.prunable * 4
        if job.rule == "baseline_imp":  # the rewind state and the masks
            train_bytes += a.params * 4 + a.prunable * 4
    products = 0.0
    if job.rule in GPU_RULES_WITH_PRODUCTS:
        products = a.chunk_bytes(f.chunk) + 2 * ROW_BATCH * f.dim * 4 + 3 * f.dim * 4
        if job.rule in ("slq", "seed_prediction", "regime_prediction", "iterative") and f.basis_device == "gpu":
            products += f.basis_bytes
    evaluation = EVAL_BATCH * a.eval_held + 16 * f.dim  # the pruner's sorted copy and order
    if job.rule == "magnitude_scaling":
        evaluation += f.model_bytes  # the scaled copy
    if job.rule == "oneshot":  # one chunk of per-sample gradients on the GPU (module docstring), or the evaluation
        evaluation = max(evaluation, GRAD_CHUNK * (ACTIVATION_FACTOR * a.step_saved + 16 * a.prunable))
    return base + max(train_bytes, products, evaluation)


def host_memory(job: Job, f: TaskFacts) -> float:
    base = HOST_BASE_BYTES + HOST_LOAD_FACTOR * f.data_bytes + 2 * f.model_bytes
    if job.rule in ("slq", "seed_prediction", "regime_prediction", "iterative") and f.basis_device == "host":
        base += f.basis_bytes + 3 * f.dim * 4
    if job.rule == "oneshot":  # the float64 gradients, their mask, a block's copies, the Cholesky factors
        N, D = job.extra["samples"], f.arch.prunable
        b = min(job.extra["block_size"], D)
        base += 9 * N * D + 16 * N * b + 8 * (math.ceil(D / b) + 3) * min(N, b) ** 2 + 32 * D
    return base


def disk_bytes(job: Job, f: TaskFacts | None, config: dict, settings: Settings) -> float:
    """Bytes a job leaves (logs and JSON files: 1 MB)."""
    small = 1e6
    if job.rule == "dataset":
        n_train, n_test = SAMPLES[job.name]
        shape, _ = dataset_shape(job.name)
        return ARCHIVE_BYTES[job.name] + (n_train + n_test) * math.prod(shape)
    if job.rule in ("train", "train_reseeded"):
        return f.model_bytes + small
    if job.rule in ("slq", "seed_prediction", "regime_prediction"):
        return f.runs * f.steps * 8 * 4 + 16 * settings.hessian(job.task).n_bins + small
    if job.rule.endswith("sweep") or job.rule == "sweep_dense":
        return settings.prune.grid * 200 + small
    return small


@dataclass
class PlannedJob:
    rule: str
    task: str
    job: str
    model: str
    dataset: str
    gpus: int
    flop: float
    a100_h: float
    h100_h: float
    gpu_mem_gb: float
    host_mem_gb: float
    disk_gb: float
    basis_device: str
    basis_gb: float
    chunk_size: int
    n_train: int
    hvp_flops: float
    hvp_s: float
    hvp_s_h100: float
    over_gpu_memory: bool
    note: str


def plan(config: dict, archs: dict[str, Architecture],
         gpu_for_memory: Gpu = GPUS["a100"]) -> tuple[list[PlannedJob], dict]:
    """One PlannedJob per job of the preset, and each task's facts."""
    settings = Settings.from_config(config)
    facts = {t: task_facts(config, t, archs[t], gpu_for_memory) for t in config["tasks"]}
    rows = []
    for job in enumerate_jobs(config):
        if job.rule == "dataset":
            d = job.name
            n_train, n_test = SAMPLES[d]
            shape, _ = dataset_shape(d)
            host = HOST_BASE_CPU_BYTES + ARCHIVE_BYTES[d] + 3 * (n_train + n_test) * math.prod(shape)
            rows.append(PlannedJob("dataset", "", d, "", d, 0, 0.0, 0.0, 0.0, 0.0, host / GB,
                                   disk_bytes(job, None, config, settings) / GB, "", 0.0, 0, n_train, 0.0, 0.0, 0.0,
                                   False, "CPU only: download, md5, parse"))
            continue
        f = facts[job.task]
        work = job_work(config, job, f, settings)
        on_host = f.basis_device == "host" and job.rule in ("slq", "seed_prediction", "regime_prediction",
                                                              "iterative")
        mem = gpu_memory(job, f, config)
        hvp = _products(f, 1)
        notes = []
        if on_host:
            notes.append(f"basis {f.basis_bytes / GB:.0f} GB in host memory")
        if work.host_flops:
            notes.append(f"host float64 algebra {work.host_flops / 1e12:,.0f} TFLOP, "
                         f"{work.host_flops / HOST_FLOP_RATE / 3600:.1f} h at {HOST_FLOP_RATE:.0e} FLOP/s, + "
                         f"{work.host_s / 3600:.1f} h of swaps and IHT steps (uncalibrated)")
        if mem > gpu_for_memory.memory:
            notes.append(f"needs {mem / GB:.0f} GB: set tasks.{job.task}.hessian.chunk_size <= {f.chunk_fits}"
                         if job.rule in GPU_RULES_WITH_PRODUCTS else f"needs {mem / GB:.0f} GB")
        rows.append(PlannedJob(
            job.rule, job.task, job.name, f.arch.model, f.dataset, 1, work.flops.total,
            seconds(work, GPUS["a100"], on_host) / 3600, seconds(work, GPUS["h100"], on_host) / 3600,
            mem / GB, host_memory(job, f) / GB, disk_bytes(job, f, config, settings) / GB,
            f.basis_device if job.rule in ("slq", "seed_prediction", "regime_prediction", "iterative") else "",
            f.basis_bytes / GB, f.chunk, f.n_train, hvp.flops.total, seconds(hvp, GPUS["a100"], False),
            seconds(hvp, GPUS["h100"], False), mem > gpu_for_memory.memory, "; ".join(notes)))
    return rows, facts


def slurm_needs(rows: list[PlannedJob]) -> dict[str, dict]:
    """Per rule, what the SLURM profile must ask for to cover the plan's largest job of that rule."""
    needs: dict[str, dict] = {}
    for r in rows:
        need = needs.setdefault(r.rule, {"runtime": 0, "mem_mb": 0, "gpu": r.gpus, "cpus_per_task": 1,
                                         "a100_h": 0.0, "host_gb": 0.0, "gpu_gb": 0.0})
        need["a100_h"] = max(need["a100_h"], r.a100_h)
        need["host_gb"] = max(need["host_gb"], r.host_mem_gb)
        need["gpu_gb"] = max(need["gpu_gb"], r.gpu_mem_gb)
        need["runtime"] = max(need["runtime"], 60 * math.ceil(RUNTIME_MARGIN * r.a100_h)) if r.gpus else 0
        need["mem_mb"] = max(need["mem_mb"], 1000 * math.ceil(HOST_MEMORY_MARGIN * r.host_mem_gb))
        if r.gpus:
            need["cpus_per_task"] = max(need["cpus_per_task"], CPUS_HOST_BASIS if r.basis_device == "host" else
                                        CPUS_HOST_ALGEBRA if r.rule == "oneshot" else CPUS_GPU_JOB)
    return needs


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def _hours(h: float) -> str:
    return f"{h:,.1f}" if h >= 0.05 or h == 0 else f"{h:.2f}"


def _md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def task_table(rows: list[PlannedJob], config: dict) -> tuple[list[str], list[list], dict]:
    header = ["task", "GPU jobs", "A100 GPU-h", "H100 GPU-h", "peak GPU GB", "largest job (A100 h)", "host GB"]
    body = []
    totals = {"jobs": 0, "a100": 0.0, "h100": 0.0, "gpu_gb": 0.0, "disk_gb": sum(r.disk_gb for r in rows)}
    for t in config["tasks"]:
        mine = [r for r in rows if r.task == t]
        if not mine:
            continue
        big = max(mine, key=lambda r: r.a100_h)
        a100, h100 = sum(r.a100_h for r in mine), sum(r.h100_h for r in mine)
        peak = max(r.gpu_mem_gb for r in mine)
        body.append([t, len(mine), _hours(a100), _hours(h100), f"{peak:.1f}",
                     f"{big.rule} {big.job} ({_hours(big.a100_h)})", f"{max(r.host_mem_gb for r in mine):.0f}"])
        totals["jobs"] += len(mine)
        totals["a100"] += a100
        totals["h100"] += h100
        totals["gpu_gb"] = max(totals["gpu_gb"], peak)
    body.append(["**total**", totals["jobs"], f"**{_hours(totals['a100'])}**", f"**{_hours(totals['h100'])}**",
                 f"{totals['gpu_gb']:.1f}", "", ""])
    return header, body, totals


def rule_table(rows: list[PlannedJob], needs: dict[str, dict]) -> tuple[list[str], list[list]]:
    header = ["rule", "jobs", "A100 GPU-h", "H100 GPU-h", "largest job A100 h", "peak GPU GB", "host GB",
              "SLURM runtime (min)", "SLURM mem_mb", "cpus"]
    body = []
    for rule, need in needs.items():
        mine = [r for r in rows if r.rule == rule]
        body.append([rule, len(mine), _hours(sum(r.a100_h for r in mine)), _hours(sum(r.h100_h for r in mine)),
                     _hours(need["a100_h"]), f"{need['gpu_gb']:.1f}", f"{need['host_gb']:.1f}",
                     need["runtime"] or "-", need["mem_mb"], need["cpus_per_task"] if need["gpu"] else "-"])
    return header, body


def render_markdown(rows, facts, needs, meta: dict, config: dict) -> str:
    header, body, totals = task_table(rows, config)
    flags = tf32_flags()
    out = [f"# Paper preset plan ({meta['preset']})", "",
           f"Written by `benchmarks/paper_scale.py`{' --quick' if meta['quick'] else ''} on {meta['date']}, commit "
           f"{meta['commit']}, machine: {meta['machine']}; measurements: {meta['memory_source']}. "
           f"{len([r for r in rows if r.gpus])} GPU jobs and {len([r for r in rows if not r.gpus])} CPU jobs "
           "(the tables and figures run on the submit host). Times are projections, not measurements: see the "
           "assumptions below.", "",
           "## Per task", "", _md_table(header, body), "",
           f"Totals: **{_hours(totals['a100'])} A100 GPU-hours**, **{_hours(totals['h100'])} H100 GPU-hours**, "
           f"disk {totals['disk_gb']:.1f} GB (data sets with their archives, models, spectra, curves).", "",
           "## Per rule and the SLURM resources it implies", "",
           f"runtime = {RUNTIME_MARGIN:g} x the largest job's A100 projection, rounded up to whole hours; mem_mb = "
           f"{HOST_MEMORY_MARGIN:g} x its host memory, rounded up to a whole GB; cpus = {CPUS_HOST_BASIS} where the "
           f"basis may sit in host memory (its reorthogonalisation runs on the CPU), {CPUS_HOST_ALGEBRA} for oneshot "
           f"(its float64 Fisher algebra runs on the CPU), else {CPUS_GPU_JOB}.", "",
           _md_table(*rule_table(rows, needs)), "",
           "## Per task: the measured quantities", "",
           _md_table(["task", "D", "params", "fwd GFLOP/sample", "step / fwd", "HVP / fwd", "HVP chunk MB/sample",
                      "chunk", "chunk GB", "largest chunk that fits", "basis GB", "basis", "data GB"],
                     [[t, f"{f.dim:,}", f"{f.arch.params:,}", f"{f.arch.fwd.total / 1e9:.3f}",
                       f"{f.arch.step.total / f.arch.fwd.total:.2f}", f"{f.arch.hvp.total / f.arch.fwd.total:.2f}",
                       f"{f.arch.hvp_slope / 1e6:.2f}", f.chunk, f"{f.arch.chunk_bytes(f.chunk) / GB:.1f}",
                       f.chunk_fits, f"{f.basis_bytes / GB:.1f}", f.basis_device, f"{f.data_bytes / GB:.2f}"]
                      for t, f in facts.items()]), ""]
    flagged = [r for r in rows if r.over_gpu_memory]
    host = sorted({(r.task, r.rule) for r in rows if r.basis_device == "host"})
    out += ["## Jobs over 80 GB and where the basis goes", ""]
    if flagged:
        out += [f"- **{r.rule} {r.task} {r.job}**: {r.note}" for r in flagged]
    else:
        out += ["No job needs more than the 80 GB of GPU memory with the preset's chunk sizes."]
    if host:
        tasks = sorted({t for t, _ in host})
        out += ["", f"The Lanczos basis goes to host memory (`hessian.basis_device: auto`, over "
                f"{BASIS_GPU_SHARE:.0%} of the free GPU memory) for: "
                + "; ".join(f"{t} ({facts[t].basis_bytes / GB:.0f} GB: {', '.join(r for tt, r in host if tt == t)})"
                            for t in tasks)
                + ". Their host memory includes it, and so do the profile's mem_mb of those rules."]
    long = [r for r in rows if r.a100_h > LONG_JOB_H]
    out += ["", f"## Jobs longer than {LONG_JOB_H} h on an A100", ""]
    if long:
        by_rule: dict[str, list[PlannedJob]] = {}
        for r in long:
            by_rule.setdefault(r.rule, []).append(r)
        out += [_md_table(["rule", "jobs", "longest", "A100 h", "H100 h", "after preemption"],
                          [[rule, len(js), f"{max(js, key=lambda r: r.a100_h).task} "
                            f"{max(js, key=lambda r: r.a100_h).job}", _hours(max(r.a100_h for r in js)),
                            _hours(max(r.h100_h for r in js)),
                            "resumes from its last epoch" if rule.startswith("train") else "starts over"]
                           for rule, js in by_rule.items()]), "",
                "A partition with a shorter time limit refuses these at submission (or holds them with reason "
                "PartitionTimeLimit): run them where the limit allows, or on H100s."]
    else:
        out += ["None."]
    out += ["", "## Assumptions", "",
            f"- Peaks (vendor datasheets): {GPUS['a100'].name}: FP32 {GPUS['a100'].fp32 / 1e12:g} TFLOP/s, "
            f"TF32 {GPUS['a100'].tf32 / 1e12:g} dense, {GPUS['a100'].bandwidth / 1e12:g} TB/s; {GPUS['h100'].name}: "
            f"FP32 {GPUS['h100'].fp32 / 1e12:g}, TF32 {GPUS['h100'].tf32 / 1e12:g} dense, "
            f"{GPUS['h100'].bandwidth / 1e12:g} TB/s.",
            f"- Precision: the code sets no TF32 flag; PyTorch's defaults read here: cuDNN convolutions TF32 = "
            f"{flags['conv']}, matmuls TF32 = {flags['matmul']}. Convolutions at {ETA_TF32:g} x the TF32 peak, "
            f"everything else at {ETA_FP32:g} x the FP32 peak; {LAUNCH_S * 1e3:g} ms per step, evaluation batch "
            "or product chunk.",
            f"- Lanczos reorthogonalisation: basis in GPU memory at {ETA_BANDWIDTH:g} x its bandwidth, in host "
            f"memory at {HOST_BANDWIDTH / 1e9:g} GB/s. Steps per run: the cap (max_iter), which the doubling "
            "reaches with the paper's settings anyway.",
            f"- Memory: {meta['memory_source']}; a chunk's peak = {HVP_PARAM_COPIES} x P x 4 bytes + saved-tensor "
            f"intercept + ({ACTIVATION_FACTOR:g} x saved bytes + {INPUT_COPIES} input samples) per sample x chunk "
            "(CPU check: "
            f"{meta.get('rss_check', 'not run (--quick)')}); CUDA context and workspaces "
            f"{CUDA_RESERVE_BYTES / GB:g} GB; host: {HOST_BASE_BYTES / GB:g} GB per job + {HOST_LOAD_FACTOR:g} x the "
            f"float32 data set while loading ({meta.get('load_factor', 'measured 2.47x, not rerun with --quick')}).",
            f"- One-shot (oneshot): the Fisher algebra in float64 on the host at {HOST_FLOP_RATE:.0e} FLOP/s, "
            f"plus {HOST_SWAP_S * 1e3:g} ms a CBS swap and {HOST_IHT_S * 1e3:g} ms a CHITA IHT step at their caps "
            "(uncalibrated; module docstring for the formulas); the per-sample gradients at the training step's "
            "FLOPs, 64 samples at a time on the GPU (16 bytes per sample and weight), N x D float64 on the host.",
            f"- Job counts: {meta.get('dag_check', 'from the preset (snakemake -n not compared with --quick)')}.",
            "- Not modelled: the download, checkpoint writes, the CPU arithmetic of the prediction (seconds), "
            "queueing."]
    return "\n".join(out) + "\n"


def write_outputs(rows: list[PlannedJob], markdown: str, out: Path) -> None:
    import csv

    with atomic_path(out / "plan.csv") as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            for r in rows:
                writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in asdict(r).items()})
    with atomic_path(out / "plan.md") as tmp:
        tmp.write_text(markdown)


def _commit() -> str:
    """HEAD's short hash, and whether tracked files differ from it (the plan is of the working tree)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes)" if dirty else head


def measure_all(config: dict, device: str, quick: bool, log=print) -> tuple[dict[str, Architecture], dict]:
    """Each task's Architecture (one measurement per distinct model, shape and parameter set)."""
    cache: dict[str, Architecture] = {}
    archs, meta = {}, {}
    settings = Settings.from_config(config)
    for task, entry in config["tasks"].items():
        in_shape, classes = dataset_shape(entry["dataset"], config["datasets"].get(entry["dataset"]))
        params = settings.hessian(task).params
        key = json.dumps([entry["model"], entry["model_args"], in_shape, classes, params], sort_keys=True)
        if key not in cache:
            t0 = time.perf_counter()
            arch = measure(entry["model"], entry["model_args"], in_shape, classes, params, "meta")
            if device == "cuda":
                arch = measure_cuda_chunk(arch, params)
            if not quick and device != "cuda":
                arch.checks.update(_checked_on_cpu(arch, params))
            cache[key] = arch
            log(f"  {task}: {entry['model']} {in_shape} measured in {time.perf_counter() - t0:.1f} s")
        archs[task] = copy.deepcopy(cache[key])
    return archs, meta


def _checked_on_cpu(arch: Architecture, params: str) -> dict:
    samples = check_samples(arch)
    args = json.dumps([arch.model, arch.model_args, list(arch.in_shape), arch.classes, params, samples])
    proc = subprocess.run([sys.executable, __file__, "--check-architecture", args], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"the CPU check of {arch.model} failed: {proc.stderr.strip()[-500:]}")
    real = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"samples": samples, "rss_peak": real["rss_peak"], "planned_chunk": arch.chunk_bytes(samples),
            "flops_match": math.isclose(real["hvp_conv"], arch.hvp.conv, rel_tol=1e-9)
            and math.isclose(real["hvp_mm"], arch.hvp.mm, rel_tol=1e-9)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default=str(PRESET))
    parser.add_argument("--out", default=None, help="folder of plan.csv and plan.md (default results/<preset name>)")
    parser.add_argument("--quick", action="store_true", help="meta-device measurements only, no checks (seconds)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cuda: measure the chunk's peak with torch.cuda.max_memory_allocated")
    parser.add_argument("--check-architecture", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.check_architecture:
        print(json.dumps(real_cpu_check(*json.loads(args.check_architecture))))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device here")
    t0 = time.perf_counter()
    config = load_preset(args.preset)
    out = Path(args.out) if args.out else ROOT / "results" / config["preset"]
    print(f"measuring {len(config['tasks'])} tasks of {args.preset}{' (quick)' if args.quick else ''}")
    archs, meta = measure_all(config, args.device, args.quick)
    rows, facts = plan(config, archs)
    needs = slurm_needs(rows)
    meta.update({"preset": Path(args.preset).name, "quick": args.quick, "commit": _commit(),
                 "date": datetime.date.today().isoformat(),
                 "machine": f"{os.cpu_count()} CPU cores" + (f", {torch.cuda.get_device_name()}"
                                                            if args.device == "cuda" else ""),
                 "memory_source": next(iter(archs.values())).memory_source})
    problems = []
    if not args.quick:
        ratios = {t: a.checks["rss_peak"] / a.checks["planned_chunk"] for t, a in archs.items()
                  if "rss_peak" in a.checks}
        if ratios:
            worst = max(ratios, key=ratios.get)
            meta["rss_check"] = ("peak resident memory of a real chunk / the plan's estimate, per task (samples): "
                                 + ", ".join(f"{t} {r:.2f} ({archs[t].checks['samples']})" for t, r in ratios.items())
                                 + f"; at most {ratios[worst]:.2f}; an excess under "
                                 f"{CHECK_SLACK_BYTES / 1e6:.0f} MB, the process's first product, passes")
            excess = {t: archs[t].checks["rss_peak"] - archs[t].checks["planned_chunk"] for t in ratios}
            problems += [f"{t}: a real chunk took {r:.2f}x the planned memory" for t, r in ratios.items()
                         if r > 1 and excess[t] > CHECK_SLACK_BYTES]
            problems += [f"{t}: real and meta FLOPs differ" for t, a in archs.items()
                         if not a.checks.get("flops_match", True)]
        factor = measure_load_factor()
        meta["load_factor"] = f"measured {factor:.2f}x on a synthetic CIFAR-shaped file"
        if factor > HOST_LOAD_FACTOR:
            problems.append(f"loading took {factor:.2f}x the float32 data set, above HOST_LOAD_FACTOR")
        dag = dag_job_counts(args.preset)
        mine: dict[str, int] = {}
        for r in rows:
            mine[r.rule] = mine.get(r.rule, 0) + 1
        meta["dag_check"] = ("equal to `snakemake -n` per rule" if dag == mine
                             else f"DIFFER from snakemake -n: {dag} vs {mine}")
        if dag != mine:
            problems.append(meta["dag_check"])
    markdown = render_markdown(rows, facts, needs, meta, config)
    write_outputs(rows, markdown, out)
    header, body, _ = task_table(rows, config)
    print(_md_table(header, body))
    flagged = [r for r in rows if r.over_gpu_memory]
    for r in flagged:
        print(f"OVER {GPUS['a100'].memory / GB:.0f} GB: {r.rule} {r.task} {r.job}: {r.note}")
    for t, f in facts.items():
        if f.basis_device == "host":
            print(f"basis in host memory: {t} ({f.basis_bytes / GB:.0f} GB)")
    for p in problems:
        print(f"CHECK FAILED: {p}")
    print(f"wrote {out / 'plan.csv'} and {out / 'plan.md'} in {time.perf_counter() - t0:.0f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
