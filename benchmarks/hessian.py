"""Check: our Hessian-vector product and SLQ against PyHessian 0.1 on a mini task; exits 1 on a missed target.

    .venv/bin/python benchmarks/hessian.py [--task fc5_digits] [--threads 1] [--n-iter N] [--runs R]

The model is the pipeline's trained L1 model of ``--task`` (results/mini/train/<task>/l1) if present,
else the task's model (config.yaml: model, model_args, dataset, l1) trained briefly here. Every
product and SLQ is over all parameters (PyHessian's choice), so the work compared is the same.

Products, in gradients (one forward + backward over the training set): in each of ``--repeats``
rounds every variant runs once, in turn, and is divided by that round's gradient; the median over
rounds is printed (on a busy machine the load drifts between rounds more than within one):
- ours: :class:`prunelimit.hessian.HessianOperator` as the pipeline uses it (on an MLP, over the
  units active on some sample: the others' Hessian rows are exactly zero);
- the variants measured to choose it, each with its relative difference from ours: the same
  operator keeping every unit,
  double backward through the model as written (the operator before eval BatchNorm was
  rewritten as a per-channel affine map), ``torch.func.jvp`` over ``torch.func.grad``
  (forward-over-reverse, recomputing the gradient each product), and ``torch.func.linearize`` of
  the gradient (forward-over-reverse with the gradient's intermediates cached);
- PyHessian's two modes: single batch ``data=(x, y)`` with the whole training set (it caches the
  gradient graph, as we do) and ``dataloader=`` batches of 128, as the official code runs it over
  the training set (``yaohessian.get_density``): every product re-runs forward and double backward
  per batch.

SLQ: ours (and, on an MLP, ours keeping every unit: Lanczos on all D coordinates) against
PyHessian's ``density()`` in both modes at the same Lanczos steps and runs
(default: hessian.n_iter and n_runs of config.yaml), medians of ``--slq-repeats`` rounds, taking
turns as the products do.

Targets (checked against the reference measured in the same run): our HVP ≤ 1.9 gradients; SLQ
≥ 1.3× faster than PyHessian's single batch and ≥ 2× faster than its dataloader mode.

PyHessian is a benchmark-only extra: ``.venv/bin/pip install -c envs/constraints.txt pyhessian==0.1``
(without it nothing can be checked: exit 2). Its ``density()`` calls ``torch.eig``, removed from
torch; a symmetric ``torch.linalg.eigh`` stand-in is installed at run time (the tridiagonal is
symmetric, so this is what it computed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from prunelimit.data import load_tensors, prepare_dataset  # noqa: E402
from prunelimit.hessian import HessianOperator  # noqa: E402
from prunelimit.lanczos import slq  # noqa: E402
from prunelimit.models import build_model  # noqa: E402
from prunelimit.train import TrainConfig, load_trained, train  # noqa: E402

TARGET_HVP_GRADIENTS = 1.9
TARGET_SPEEDUP_BATCH = 1.3
TARGET_SPEEDUP_LOADER = 2.0
BRIEF_EPOCHS = 5  # training here when the pipeline has no result: enough to leave the initialisation


def interleaved_times(fns: dict, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each function in each round; within a round the functions take turns, so a
    change in the machine's load between rounds touches them alike, and the round's first
    function moves on each round, so no function always follows the same one."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for r in range(repeats):
        for name in order[r % len(order):] + order[:r % len(order)]:  # each starts a round in turn: the one
            t0 = time.perf_counter()                                   # after the gradient was measured slower
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def median_ratio(times: list[float], reference: list[float]) -> float:
    """Median over rounds of the time relative to the reference's time in the same round."""
    return statistics.median(t / r for t, r in zip(times, reference))


def load_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config.yaml").read_text())


def load_model(task: str, config: dict, results: Path):
    """The pipeline's trained L1 model of ``task`` if present, else that model trained briefly here."""
    spec = config["tasks"][task]
    ckpt = results / "train" / task / "l1"
    data_file = results / "data" / f"{spec['dataset']}.npz"
    if (ckpt / "model.pt").exists() and data_file.exists():
        model, _ = load_trained(ckpt / "model.pt", ckpt / "metrics.json")
        return model, load_tensors(data_file), f"{ckpt}/model.pt"
    options = config.get("datasets", {}).get(spec["dataset"], {})
    data = load_tensors(prepare_dataset(spec["dataset"], Path(tempfile.mkdtemp()) / "data.npz", options,
                                        progress=False))
    model = build_model(spec["model"], data.in_shape, data.num_classes, seed=0, **spec.get("model_args", {}))
    cfg = {**config.get("train_defaults", {}), **spec.get("train", {}), "epochs": BRIEF_EPOCHS,
           "l1": float(spec.get("l1", 0.0))}
    train(model, data, TrainConfig.from_dict(cfg), progress=False)
    return model.eval(), data, f"{task} trained {BRIEF_EPOCHS} epochs here (no pipeline result)"


def install_eig_shim() -> None:
    """PyHessian 0.1 calls torch.eig(T, eigenvectors=True) → ((n, 2) real/imag, vectors)."""
    def eig(T, eigenvectors=False):
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    torch.eig = eig


# --- the HVP variants measured to choose ours ---------------------------------------------------


def _flat(parts) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in parts])


def plain_double_backward(model, x, y, params):
    """Double backward through the model as written (BatchNorm as the module computes it)."""
    grads = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    sizes, shapes = [p.numel() for p in params], [p.shape for p in params]

    def hvp(v):
        parts = [t.view(s) for t, s in zip(v.split(sizes), shapes)]
        return _flat(torch.autograd.grad(grads, params, grad_outputs=parts, retain_graph=True))
    return hvp


def forward_over_reverse(model, x, y, linearized: bool):
    """H·v = d/dε ∇L(θ + εv) by forward-mode differentiation of the gradient (torch.func).

    ``linearized``: ``torch.func.linearize`` traces the tangent computation once, keeping the
    gradient's intermediates; otherwise ``torch.func.jvp`` recomputes the gradient every product.
    """
    from torch.func import functional_call, grad, jvp, linearize

    named = dict(model.named_parameters())
    names = list(named)
    buffers = dict(model.named_buffers())
    primals = {n: p.detach() for n, p in named.items()}
    sizes, shapes = [p.numel() for p in named.values()], [p.shape for p in named.values()]
    gradient = grad(lambda ps: F.cross_entropy(functional_call(model, {**ps, **buffers}, (x,)), y))

    def tangents(v):
        return {n: t.view(s) for n, t, s in zip(names, v.split(sizes), shapes)}

    if linearized:
        _, lin = linearize(gradient, primals)
        return lambda v: _flat(lin(tangents(v)).values())
    return lambda v: _flat(jvp(gradient, (primals,), (tangents(v),))[1].values())


def matmul_bound(model, kept_units: list[int] | None = None) -> float | None:
    """For a net of linear layers only: the HVP's matmul FLOPs over the gradient's.

    The gradient takes per layer 3 (in × out) products over the samples (forward, weight grad,
    input grad), the first layer 2 (no input grad). The exact HVP (Pearlmutter 1994's R-operator
    of the backward pass) takes 6 (tangent forward 2, tangents of the weight and input grads 2
    each), the first layer 2: no implementation of the exact product over every unit does fewer.
    ``kept_units``: the hidden widths the HVP runs on (the units active on some sample); the
    gradient keeps every unit.
    """
    layers = [m for m in model.modules() if len(list(m.children())) == 0 and any(True for _ in m.parameters())]
    if not layers or not all(isinstance(m, torch.nn.Linear) for m in layers):
        return None
    widths = [layers[0].in_features] + [m.out_features for m in layers]
    kept = [widths[0], *(kept_units or widths[1:-1]), widths[-1]]

    def flops(w, products):
        sizes = [a * b for a, b in zip(w[:-1], w[1:])]
        return 2 * sizes[0] + products * sum(sizes[1:])

    return flops(kept, 6) / flops(widths, 3)


def main() -> int:
    config = load_config()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="fc5_digits", choices=sorted(config["tasks"]),
                        help="mini task whose model is measured (the largest: fc12_digits, vgg_digits)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: least noise)")
    parser.add_argument("--n-iter", type=int, default=int(config["hessian"]["n_iter"]),
                        help="Lanczos steps per SLQ run (default: hessian.n_iter of config.yaml)")
    parser.add_argument("--runs", type=int, default=int(config["hessian"]["n_runs"]),
                        help="SLQ runs (default: hessian.n_runs of config.yaml)")
    parser.add_argument("--repeats", type=int, default=15, help="rounds of the product timings")
    parser.add_argument("--slq-repeats", type=int, default=3, help="rounds of the SLQ timings")
    parser.add_argument("--results", type=Path, default=ROOT / "results/mini")
    args = parser.parse_args()
    try:
        from pyhessian import hessian as PyHessian
        from pyhessian.utils import hessian_vector_product
    except ImportError:
        print("pyhessian is not installed: nothing to check against. Install the benchmark extra with\n"
              "  .venv/bin/pip install -c envs/constraints.txt pyhessian==0.1")
        return 2
    install_eig_shim()
    warnings.filterwarnings("ignore", message=".*create_graph=True will create a reference cycle")  # PyHessian's
    warnings.filterwarnings("ignore", message=".*Attempted to insert a get_attr Node")  # linearize's constants
    torch.set_num_threads(args.threads)
    model, data, source = load_model(args.task, config, args.results)
    x, y = data.x_train, data.y_train
    all_params = [p for p in model.parameters() if p.requires_grad]
    print(f"task {args.task}: {source}; N = {len(x)} samples; {sum(p.numel() for p in all_params):,} parameters; "
          f"{args.threads} thread(s)")

    ours = HessianOperator(model, x, y, params="all")
    live = ours._live_units
    if live is not None:
        hidden = sum(m.out_features for m in model.linear[:-1] if isinstance(m, torch.nn.Linear))
        print(f"ours skips the {live.dead_units} of {hidden} hidden units that are zero on every sample "
              f"(exact: their Hessian rows are zero): kept per layer {live.kept_units}")
    ours_prunable = HessianOperator(model, x, y, params="prunable")
    v = torch.randn(ours.dim, generator=torch.Generator().manual_seed(0))
    v_prunable = torch.randn(ours_prunable.dim, generator=torch.Generator().manual_seed(0))
    ref = ours.matvec(v)
    variants = {
        "every unit kept (skip_dead_units=False)": HessianOperator(model, x, y, params="all",
                                                                    skip_dead_units=False).matvec,
        "double backward, BatchNorm as written (before)": plain_double_backward(model, x, y, all_params),
        "jvp over grad (forward-over-reverse)": forward_over_reverse(model, x, y, linearized=False),
        "linearize of grad (forward-over-reverse, cached)": forward_over_reverse(model, x, y, linearized=True),
    }
    ph = PyHessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    v_list = [t.view_as(p) for t, p in zip(v.split([p.numel() for p in ph.params]), ph.params)]
    batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, len(x), 128)]
    ph_loader = PyHessian(model, torch.nn.CrossEntropyLoss(), dataloader=batches, cuda=False)

    def gradient():
        torch.autograd.grad(F.cross_entropy(model(x), y), all_params)

    k = 2
    V = torch.randn(ours.dim, k, generator=torch.Generator().manual_seed(1))
    ours_vmap = HessianOperator(model, x, y, params="all", vmap_matmat=True)
    fns = {"one gradient (forward + backward, all params)": gradient,
           "ours: HVP, all params": lambda: ours.matvec(v),
           "ours: HVP, prunable weights": lambda: ours_prunable.matvec(v_prunable),
           f"ours: matmat of {k} columns by loop, per column": lambda: ours.matmat(V),
           f"ours: matmat of {k} columns by vmap, per column": lambda: ours_vmap.matmat(V),
           **{f"variant: {name}": (lambda f=f: f(v)) for name, f in variants.items()},
           "PyHessian HVP, single batch (cached graph)": lambda: hessian_vector_product(ph.gradsH, ph.params, v_list),
           "PyHessian HVP, dataloader of 128s (official usage)": lambda: ph_loader.dataloader_hv_product(v_list)}
    per = {name: (k if "matmat" in name else 1) for name in fns}
    diffs = {f"variant: {name}": (torch.linalg.vector_norm(f(v) - ref) / torch.linalg.vector_norm(ref)).item()
             for name, f in variants.items()}
    diffs["PyHessian HVP, single batch (cached graph)"] = (torch.linalg.vector_norm(
        _flat(hessian_vector_product(ph.gradsH, ph.params, v_list)) - ref) / torch.linalg.vector_norm(ref)).item()
    diffs[f"ours: matmat of {k} columns by vmap, per column"] = (torch.linalg.matrix_norm(
        ours_vmap.matmat(V) - ours.matmat(V)) / torch.linalg.matrix_norm(ours.matmat(V))).item()
    times = interleaved_times(fns, args.repeats)
    grad_times = times["one gradient (forward + backward, all params)"]
    print(f"\nproducts: {args.repeats} rounds; gradients = median over rounds of the time / that round's gradient")
    print(f"{'quantity':<58}{'median s':>10}{'gradients':>11}{'rel. diff. from ours':>22}")
    for name, ts in times.items():
        diff = f"{diffs[name]:.1e}" if name in diffs else ""
        print(f"{name:<58}{statistics.median(ts) / per[name]:>10.4f}"
              f"{median_ratio(ts, grad_times) / per[name]:>11.2f}{diff:>22}")
    hvp_gradients = median_ratio(times["ours: HVP, all params"], grad_times)
    bound = matmul_bound(model)
    if bound is not None:
        print(f"(linear layers only: any exact HVP over every unit takes {bound:.2f}× the gradient's matmul "
              f"FLOPs; over the units ours keeps, {matmul_bound(model, live.kept_units if live else None):.2f}×)")
    variants = fns = ours_vmap = None  # their graphs: free before SLQ

    print(f"\nSLQ: {args.runs} run(s) of {args.n_iter} Lanczos steps, all {ours.dim:,} parameters, "
          f"medians of {args.slq_repeats} interleaved rounds")
    out = {}

    def keep(key, fn):
        def run():
            out[key] = fn()
        return run

    every_unit = (HessianOperator(model, x, y, params="all", skip_dead_units=False) if live is not None else None)
    slq_times = interleaved_times({
        "ours": keep("ours", lambda: slq(ours, args.runs, args.n_iter, seed=0, progress=False)),
        **({"every unit": keep("every unit", lambda: slq(every_unit, args.runs, args.n_iter, seed=0, progress=False))}
           if every_unit is not None else {}),
        "batch": keep("batch", lambda: ph.density(iter=args.n_iter, n_v=args.runs)),
        "loader": keep("loader", lambda: ph_loader.density(iter=args.n_iter, n_v=args.runs))},
        args.slq_repeats, warmup=0)
    t_ours, t_batch, t_loader = (statistics.median(slq_times[key]) for key in ("ours", "batch", "loader"))
    # speed-ups: median over rounds of PyHessian's time / ours in the same round
    up_batch, up_loader = (median_ratio(slq_times[key], slq_times["ours"]) for key in ("batch", "loader"))
    tops = [out["ours"].ritz_values.max(), *(max(max(r) for r in out[k][0]) for k in ("batch", "loader"))]
    print(f"{'ours s':>9}{'PyH batch s':>13}{'speed-up':>10}{'PyH loader s':>14}{'speed-up':>10}"
          f"{'top Ritz: ours, batch, loader':>34}")
    print(f"{t_ours:>9.2f}{t_batch:>13.2f}{up_batch:>9.2f}×{t_loader:>14.2f}{up_loader:>9.2f}×"
          f"{'  ' + ', '.join(f'{t:.5g}' for t in tops):>34}")
    if every_unit is not None:  # the same SLQ before the dead units were left out (Lanczos on all D)
        print(f"ours keeping every unit (Lanczos on all {every_unit.dim:,}): "
              f"{statistics.median(slq_times['every unit']):.2f} s, "
              f"{median_ratio(slq_times['every unit'], slq_times['ours']):.2f}× ours; top Ritz "
              f"{out['every unit'].ritz_values.max():.5g}")

    checks = [(f"our HVP ≤ {TARGET_HVP_GRADIENTS} gradients", hvp_gradients <= TARGET_HVP_GRADIENTS,
               f"{hvp_gradients:.2f}"),
              (f"SLQ ≥ {TARGET_SPEEDUP_BATCH}× PyHessian single batch", up_batch >= TARGET_SPEEDUP_BATCH,
               f"{up_batch:.2f}×"),
              (f"SLQ ≥ {TARGET_SPEEDUP_LOADER}× PyHessian dataloader", up_loader >= TARGET_SPEEDUP_LOADER,
               f"{up_loader:.2f}×")]
    print()
    for name, ok, value in checks:
        print(f"{'met   ' if ok else 'MISSED'} {name}: {value}")
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
