"""Benchmark: our Hessian-vector product and SLQ against PyHessian 0.1 on the mini FC5 / digits model.

    .venv/bin/python benchmarks/hessian.py [--threads 1] [--n-iter N] [--repeats 5]

Prints medians over repeats of: one gradient (forward + backward over the training set); our HVP
(cached gradient graph) over all parameters and over the prunable weights; one matmat column by a
loop and by vmap; PyHessian's HVP in its two modes, and SLQ, ours against PyHessian's
``density()`` at the same iterations with 1 and 4 runs, all over every parameter (PyHessian's
choice) so the work is the same. PyHessian's modes:
- single batch, ``data=(x, y)`` with the whole training set: it caches the gradient graph as we
  do, so its products cost what ours do; we gain only in the Lanczos bookkeeping;
- ``dataloader=`` batches of 128, as the official code runs it over the training set
  (``yaohessian.get_density``): every product re-runs forward and double backward per batch.

PyHessian is a benchmark-only extra: ``.venv/bin/pip install -c envs/constraints.txt pyhessian==0.1``.
Its ``density()`` calls ``torch.eig``, removed from torch; a symmetric ``torch.linalg.eigh``
stand-in is installed at run time (the tridiagonal is symmetric, so this is what it computed).
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
from prunelimit.hessian import HessianOperator, slq  # noqa: E402
from prunelimit.models import build_model  # noqa: E402
from prunelimit.train import TrainConfig, load_trained, train  # noqa: E402


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def load_model(results: Path):
    """The pipeline's trained FC5 / digits (L1) if present, else FC5 trained briefly here."""
    ckpt = results / "train/fc5_digits/l1"
    data_file = results / "data/digits.npz"
    if (ckpt / "model.pt").exists() and data_file.exists():
        model, _ = load_trained(ckpt / "model.pt", ckpt / "metrics.json")
        return model, load_tensors(data_file), f"{ckpt}/model.pt"
    data = load_tensors(prepare_dataset("digits", Path(tempfile.mkdtemp()) / "digits.npz", progress=False))
    model = build_model("fc5", data.in_shape, data.num_classes, seed=0)
    train(model, data, TrainConfig(epochs=5, l1=5e-5, seed=0), progress=False)
    return model.eval(), data, "FC5 trained 5 epochs here"


def default_n_iter() -> int:
    import yaml

    return int(yaml.safe_load((ROOT / "config.yaml").read_text())["hessian"]["n_iter"])


def install_eig_shim() -> None:
    """PyHessian 0.1 calls torch.eig(T, eigenvectors=True) → ((n, 2) real/imag, vectors)."""
    def eig(T, eigenvectors=False):
        w, V = torch.linalg.eigh(T)
        return torch.stack([w, torch.zeros_like(w)], dim=1), V

    torch.eig = eig


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1: least noise)")
    parser.add_argument("--n-iter", type=int, default=default_n_iter(),
                        help="Lanczos steps per SLQ run (default: hessian.n_iter of config.yaml)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each product timing")
    parser.add_argument("--slq-repeats", type=int, default=3, help="repeats of each SLQ timing")
    parser.add_argument("--results", type=Path, default=ROOT / "results/mini")
    args = parser.parse_args()
    try:
        from pyhessian import hessian as PyHessian
        from pyhessian.utils import hessian_vector_product
    except ImportError:
        print("pyhessian is not installed: nothing to compare against. Install the benchmark extra with\n"
              "  .venv/bin/pip install -c envs/constraints.txt pyhessian==0.1")
        return 0
    install_eig_shim()
    warnings.filterwarnings("ignore", message=".*create_graph=True will create a reference cycle")  # PyHessian's
    torch.set_num_threads(args.threads)
    model, data, source = load_model(args.results)
    x, y = data.x_train, data.y_train
    all_params = [p for p in model.parameters() if p.requires_grad]
    print(f"model: {source}; N = {len(x)} samples; {sum(p.numel() for p in all_params):,} parameters; "
          f"{args.threads} thread(s)")

    rows: list[tuple[str, float]] = []

    def gradient():
        torch.autograd.grad(F.cross_entropy(model(x), y), all_params)

    t_grad = median_time(gradient, args.repeats)
    rows.append(("one gradient (forward + backward, all params)", t_grad))

    ours_all = HessianOperator(model, x, y, params="all")
    ours_prunable = HessianOperator(model, x, y, params="prunable")
    v_all = torch.randn(ours_all.dim, generator=torch.Generator().manual_seed(0))
    v_prunable = torch.randn(ours_prunable.dim, generator=torch.Generator().manual_seed(0))
    t_ours = median_time(lambda: ours_all.matvec(v_all), args.repeats)
    rows.append(("our HVP, all params (cached graph)", t_ours))
    rows.append(("our HVP, prunable weights (cached graph)", median_time(lambda: ours_prunable.matvec(v_prunable),
                                                                         args.repeats)))
    k = 4
    V = torch.randn(ours_prunable.dim, k, generator=torch.Generator().manual_seed(1))
    batched = HessianOperator(model, x, y, vmap_matmat=True)
    rows.append((f"our matmat, {k} columns by loop, per column", median_time(lambda: ours_prunable.matmat(V),
                                                                            args.repeats) / k))
    rows.append((f"our matmat, {k} columns by vmap, per column", median_time(lambda: batched.matmat(V),
                                                                            args.repeats) / k))
    del batched

    ph = PyHessian(model, torch.nn.CrossEntropyLoss(), data=(x, y), cuda=False)
    v_list = [t.view_as(p) for t, p in zip(v_all.split([p.numel() for p in ph.params]), ph.params)]
    t_ph = median_time(lambda: hessian_vector_product(ph.gradsH, ph.params, v_list), args.repeats)
    rows.append(("PyHessian HVP, single batch (cached graph)", t_ph))
    batches = [(x[i:i + 128], y[i:i + 128]) for i in range(0, len(x), 128)]
    ph_loader = PyHessian(model, torch.nn.CrossEntropyLoss(), dataloader=batches, cuda=False)
    rows.append(("PyHessian HVP, dataloader of 128s (official usage)",
                 median_time(lambda: ph_loader.dataloader_hv_product(v_list), args.repeats)))

    print(f"\n{'quantity':<52}{'median s':>10}{'gradients':>11}")
    for name, t in rows:
        print(f"{name:<52}{t:>10.4f}{t / t_grad:>11.2f}")

    print(f"\nSLQ, {args.n_iter} Lanczos steps per run, all {ours_all.dim:,} parameters "
          f"(medians of {args.slq_repeats} at 1 run, 1 timing at 4 runs)")
    print(f"{'runs':<6}{'ours s':>9}{'PyH batch s':>13}{'speed-up':>10}{'PyH loader s':>14}{'speed-up':>10}"
          f"{'top Ritz: ours, batch, loader':>34}")
    for runs in (1, 4):
        repeats = args.slq_repeats if runs == 1 else 1
        out = {}

        def timed(key, fn):
            def run():
                out[key] = fn()
            return median_time(run, repeats, warmup=0)

        t_o = timed("ours", lambda: slq(ours_all, runs, args.n_iter, seed=0, progress=False))
        t_b = timed("batch", lambda: ph.density(iter=args.n_iter, n_v=runs))
        t_l = timed("loader", lambda: ph_loader.density(iter=args.n_iter, n_v=runs))
        tops = [out["ours"].ritz_values.max(), *(max(max(r) for r in out[k][0]) for k in ("batch", "loader"))]
        print(f"{runs:<6}{t_o:>9.2f}{t_b:>13.2f}{t_b / t_o:>9.2f}×{t_l:>14.2f}{t_l / t_o:>9.2f}×"
              f"{'  ' + ', '.join(f'{t:.5g}' for t in tops):>34}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
