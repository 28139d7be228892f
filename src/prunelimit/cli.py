"""``prunelimit``: command-line tools. ``prunelimit predict`` predicts the pruning limit of a model.

The prediction runs through :func:`prunelimit.stages.predict_from_model`, the same function the
pipeline's theory rule calls, so a checkpoint gets the same answer here and in the pipeline.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .architectures import ARCHITECTURES
from .checkpoint import load_state_dict, read_state_dict
from .cli_inputs import (
    DATA_FORMAT,
    build_user_model,
    check_model_fits_data,
    load_data,
    parse_model_args,
    read_config,
    registry_classes,
)
from .config import resolve_device
from .data import load_tensors, prepare_dataset
from .io import PrunelimitError
from .prune import OFFICIAL_GRID, TOLERANCES, sweep_and_threshold
from .settings import HessianSettings, PruneSettings, TheorySettings, ThresholdSettings
from .stages import predict_from_model

EXIT_USAGE = 2
OFFICIAL_BATCH = 128  # ε's batch size in the official code; fewer than two such batches gets a warning


# ---------------------------------------------------------------------------------------------
# predict
# ---------------------------------------------------------------------------------------------


def verify_settings(args: argparse.Namespace) -> ThresholdSettings:
    """How ``--verify`` measures the actual threshold: the prune section of ``--config`` (the sweep rule's
    settings), else the official grid and our tolerances; ``--grid``, when given, replaces the grid only."""
    settings = (PruneSettings.from_section(read_config(args.config)["prune"]) if args.config is not None
                else ThresholdSettings(grid=OFFICIAL_GRID, tolerances=TOLERANCES))
    return settings.with_grid(args.grid if args.grid is not None else settings.grid)


def predict(args: argparse.Namespace) -> dict:

    timings: dict[str, float] = {}
    model_args = parse_model_args(args.model_args)  # before any slow step
    if args.epsilon_partitions == 1 or args.epsilon_partitions < 0:
        raise PrunelimitError(f"--epsilon-partitions must be 0 (no band) or at least 2, got {args.epsilon_partitions}")
    threshold_settings = verify_settings(args)  # before any slow step: a bad --config stops here
    t = time.perf_counter()
    device = resolve_device(args.device)
    data = load_data(args.data, args.data_dir, device)
    timings["load_data"] = time.perf_counter() - t
    if args.epsilon is None and len(data.x_train) < 2:
        raise PrunelimitError(f"--data: ε is the spread of the loss over at least 2 batches, and x_train holds "
                              f"{len(data.x_train)} sample; pass --epsilon")

    t = time.perf_counter()
    state = read_state_dict(args.checkpoint)
    classes = data.num_classes
    if ":" not in args.model and args.model in ARCHITECTURES:
        classes = registry_classes(args.model, state, tuple(data.in_shape), classes, model_args)
    model = build_user_model(args.model, tuple(data.in_shape), classes, model_args)
    load_state_dict(model, args.checkpoint, state)
    model = model.to(device).eval()
    check_model_fits_data(model, data)
    timings["load_model"] = time.perf_counter() - t

    hessian_settings = HessianSettings(
        params=args.params, n_runs=args.runs, n_iter=args.iters, max_iter=max(args.max_iters, args.iters),
        tol=args.tol, stable_doublings=args.stable_doublings, seed=args.seed, chunk_size=args.chunk_size,
        n_bins=args.bins, sigma2=args.sigma2, exact_max_params=0,  # one model: SLQ, never the exact spectrum
        basis_device="auto")  # the basis on the device unless it would crowd the GPU (lanczos.basis_placement)
    # ε is the override or the spread over the data as given (no training loader here); no scaling runs
    theory_settings = TheorySettings(
        epsilon=args.epsilon, epsilon_data="clean", epsilon_partitions=args.epsilon_partitions, eta=args.eta,
        zero_row_threshold=args.zero_row_threshold, row_levels=args.row_levels, scales=(1.0,),
        scaling_grid=threshold_settings.grid)
    progress = not args.no_progress
    t = time.perf_counter()
    result = predict_from_model(model, data, hessian_settings=hessian_settings, theory_settings=theory_settings,
                                l1=args.l1,
                                seed=args.seed, progress=progress)
    timings["theory"] = time.perf_counter() - t
    summary = {
        "predicted_sparsity": result["predicted_sparsity"], "predicted_density": result["predicted_density"],
        "lower_sparsity": result["lower_sparsity"], "upper_sparsity": result["upper_sparsity"],
        "gap": result["gap"], "epsilon": result["epsilon"], "epsilon_source": result["epsilon_source"],
        "D": result["D"], "zero_fraction": result["zero_fraction"], "null_mass": result["null_mass"],
        "epsilon_band": result["epsilon_band"],  # None with --epsilon or --epsilon-partitions 0
        "top_eigenvalues": result["top_eigenvalues"][:args.top],
        "slq_steps": result["slq"]["steps"], "slq_converged": result["slq"]["converged"],
    }
    summary["warnings"] = []
    if args.epsilon is None and len(data.x_train) < 2 * OFFICIAL_BATCH:
        summary["warnings"].append(
            f"only {len(data.x_train)} training samples: ε is measured on batches smaller than the paper's "
            f"{OFFICIAL_BATCH} ({result['epsilon_source']}), so it is noisier; pass --epsilon to set it")
    if args.verify:

        if len(data.x_test) == 0:
            raise PrunelimitError("--verify needs x_test and y_test in the data")
        t = time.perf_counter()
        _, actual = sweep_and_threshold(model, data, threshold_settings, progress=progress)
        timings["verify"] = time.perf_counter() - t
        summary["actual_sparsity"] = actual["actual_sparsity"]
        summary["actual_criterion"] = actual["actual_criterion"]
        summary["actual_by_tolerance"] = actual["tolerance_sparsity"]
        summary["dense_test_acc"] = actual["dense_test_acc"]
    summary["timings_s"] = timings
    return summary


def _print_summary(s: dict) -> None:
    print(f"predicted pruning limit: sparsity {s['predicted_sparsity']:.4f} "
          f"(keep {100 * s['predicted_density']:.2f}% of {s['D']} weights)")
    print(f"kinematic bounds:        [{s['lower_sparsity']:.4f}, {s['upper_sparsity']:.4f}]  gap Δ = {s['gap']:.4f}")
    print(f"loss tolerance ε:        {s['epsilon']:.4g} ({s['epsilon_source']})")
    band = s.get("epsilon_band")
    if band:
        print(f"ε band (p10–p90):        [{band['p10']:.4g}, {band['p90']:.4g}] over {band['partitions']} random "
              f"batch partitions (batch {band['batch_size']}); predicted sparsity "
              f"[{band['predicted_sparsity_at_p10']:.4f}, {band['predicted_sparsity_at_p90']:.4f}]")
    print(f"zero-eigenvalue share:   {s['zero_fraction']:.4f}")
    print("top eigenvalues:         " + ", ".join(f"{v:.4g}" for v in s["top_eigenvalues"]))
    if "actual_sparsity" in s:
        print(f"actual (one-shot sweep): sparsity {s['actual_sparsity']:.4f} at dense test accuracy "
              f"{s['dense_test_acc']:.4f}")
    print("wall time:               " + ", ".join(f"{k} {v:.1f}s" for k, v in s["timings_s"].items()))


# The spectrum and theory options of `predict`: flag, type, default, help (the default is appended).
SPECTRUM_OPTIONS = [
    ("--runs", int, 1, "SLQ runs"),
    ("--iters", int, 128, "Lanczos iterations per run to start from"),
    ("--max-iters", int, 1024, "cap of the Lanczos iterations, doubled from --iters until the prediction moves by "
                               "less than --tol"),
    ("--stable-doublings", int, 2, "consecutive doublings within --tol that count as converged"),
    ("--tol", float, 0.005, "convergence tolerance of the predicted sparsity"),
    ("--chunk-size", int, 0, "samples per HVP chunk, 0 = whole set at once"),
    ("--row-levels", int, 20, "sparsity levels of the zero-eigenvalue estimate from Hessian rows"),
    ("--zero-row-threshold", float, 1e-7, "L1 norm below which a Hessian row is zero"),
    ("--eta", float, 0.05, "failure probability of the kinematic bounds"),
    ("--bins", int, 10000, "grid of the smoothed density (comparison only)"),
    ("--sigma2", float, 1e-5, "smoothing kernel variance factor"),
    ("--seed", int, 0, "seed of the SLQ start vectors and the ε batch order"),
    ("--epsilon-partitions", int, 10, "random batch partitions of the training set over which ε's spread is "
                                      "measured; the prediction is also given at ε's 10th and 90th percentiles "
                                      "(0 = no band; none with --epsilon)"),
    ("--top", int, 5, "how many top eigenvalues to print"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="prunelimit",
        description="Tools of prunelimit, the reproduction of 'How Sparse Can We Prune A Deep Network' (NeurIPS 2024).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser(
        "predict", formatter_class=argparse.RawDescriptionHelpFormatter,
        help="predict the pruning limit of a trained model from its weights and Hessian spectrum",
        description="Predict the largest fraction of weights one-shot global magnitude pruning can remove "
                    "without losing performance (Zhang et al., NeurIPS 2024), with kinematic bounds, from the "
                    "trained weights and the SLQ Hessian spectrum of the training loss. No pruning sweep.",
        epilog=DATA_FORMAT)
    p.add_argument("--model", required=True, help="registry name (fc5, fc12, mlp, alexnet, vgg16, resnet18, resnet50) "
                   "or MODULE:CALLABLE / path/to/file.py:CALLABLE returning an nn.Module")
    p.add_argument("--model-args", default=None,
                   help="JSON keyword arguments for the model constructor, e.g. '{\"width\": 0.5}'")
    p.add_argument("--checkpoint", required=True,
                   help="state_dict file (torch.save(model.state_dict())), loaded with weights_only=True")
    p.add_argument("--data", required=True, help="registry dataset name or a .npz/.pt file (format below)")
    p.add_argument("--data-dir", default="results/cli/data",
                   help="where registry datasets are prepared (default: %(default)s)")
    p.add_argument("--l1", type=float, default=0.0,
                   help="L1 coefficient the model was trained with; part of the loss whose spread is ε (default: 0)")
    p.add_argument("--epsilon", type=float, default=None,
                   help="loss tolerance ε; default: std of the per-batch training loss")
    for flag, kind, default, text in SPECTRUM_OPTIONS:
        p.add_argument(flag, type=kind, default=default, help=f"{text} (default: %(default)s)")
    p.add_argument("--params", choices=["prunable", "all"], default="prunable",
                   help="parameters that are pruned and the Hessian is taken over: conv/linear weights (default) "
                        "or all")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="compute device (default: auto)")
    p.add_argument("--verify", action="store_true",
                   help="also run the one-shot pruning sweep and print the actual threshold")
    p.add_argument("--config", default=None,
                   help="with --verify: a pipeline config whose prune section (grid, accuracy tolerances) the sweep "
                        "uses, as the pipeline's sweep rule does (default: none: the official grid, tolerances "
                        f"{', '.join(f'{t:g}' for t in TOLERANCES)})")
    p.add_argument("--grid", type=int, default=None,
                   help=f"with --verify: sparsity steps of the sweep; {OFFICIAL_GRID} = the official 0.1%% grid "
                        f"(default: --config's prune.grid, else {OFFICIAL_GRID})")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_epoch_scan_parser(sub)
    return parser


# ---------------------------------------------------------------------------------------------
# epoch-scan: the evidence behind each task's epoch count (config.yaml's L1 regime rule)
# ---------------------------------------------------------------------------------------------


def add_epoch_scan_parser(sub) -> None:
    from .epoch_scan import CANDIDATES, MAX_ACCURACY_DROP, MAX_DRIFT, SEEDS

    p = sub.add_parser(
        "epoch-scan", help="train a task dense and L1 at candidate epoch counts and apply the L1 regime rule",
        description="Train a config task's dense and L1 recipes (train.epochs replaced) at each candidate epoch "
                    "count E and seed, and pick E by the L1 regime rule of config.yaml: the smallest E at which "
                    f"the L1 models' mean test accuracy is at most {MAX_ACCURACY_DROP:g} below dense's and, for each "
                    f"seed, the |w| < 1e-3 share moves by at most {MAX_DRIFT:g} over the last tenth of the epochs. "
                    "Writes the rows (CSV) and the decision (.md beside it).")
    p.add_argument("--config", default="config.yaml", help="pipeline config (a complete preset; default: %(default)s)")
    p.add_argument("--task", required=True, help="a task of the config, e.g. fc5_digits")
    p.add_argument("--candidates", type=int, nargs="+", default=list(CANDIDATES),
                   help="epoch counts to try, ascending (default: %(default)s)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS), help="training seeds (default: %(default)s)")
    p.add_argument("--out", required=True, help="CSV of the rows (one per E and seed); the decision goes to the "
                   "same path with .md")
    p.add_argument("--all-candidates", action="store_true",
                   help="train every candidate instead of stopping at the first that passes")
    p.add_argument("--data-dir", default="results/epoch_scan/data",
                   help="where the task's dataset is prepared with the config's options (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default=None,
                   help="compute device (default: the config's)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads; 1 (default) as the pipeline's train jobs, whose weights' bits it fixes")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def epoch_scan_command(args: argparse.Namespace) -> int:
    """``prunelimit epoch-scan``: run :func:`prunelimit.epoch_scan.scan_epochs` for one task."""
    import copy
    import datetime

    import pandas as pd

    from .config import task_spec
    from .epoch_scan import COLUMNS, decision_markdown, decision_text, scan_epochs
    from .io import atomic_path

    config_path = Path(args.config)
    config = read_config(config_path)
    if args.task not in config["tasks"]:
        raise PrunelimitError(f"--task {args.task!r} is not a task of {config_path}: {', '.join(config['tasks'])}")
    if args.threads < 1 or min(args.candidates) < 1:
        raise PrunelimitError("--threads and every --candidates value must be at least 1")
    entry = config["tasks"][args.task]
    dataset = entry["dataset"]
    data_file = Path(args.data_dir) / f"{dataset}.npz"
    if not data_file.exists():
        prepare_dataset(dataset, data_file, config["datasets"].get(dataset, {}),
                        cache_dir=Path(args.data_dir) / "downloads", progress=not args.no_progress)
    device = resolve_device(args.device or config["device"])
    data = load_tensors(data_file, device)
    csv_path = Path(args.out)
    md_path = csv_path.with_suffix(".md")

    def spec_for(variant: str, epochs: int, seed: int) -> dict:
        spec = task_spec(config, args.task, variant, seed=seed)
        spec["train"] = {**copy.deepcopy(spec["train"]), "epochs": int(epochs)}
        return spec

    rows = []

    def on_row(row: dict) -> None:  # the CSV grows as the scan goes: a long scan's rows survive a kill
        rows.append(row)
        with atomic_path(csv_path) as tmp:
            pd.DataFrame(rows, columns=COLUMNS).to_csv(tmp, index=False)
        print(f"E = {row['epochs']}, seed {row['seed']}: L1 / dense test acc {row['l1_test_acc']:.4f} / "
              f"{row['dense_test_acc']:.4f}, |w| < 1e-3 share {row['small_weight_share']:.4f} "
              f"(drift {row['drift_last_tenth']:+.4f}), {row['wall_time_s']:.0f} s", flush=True)

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    try:
        scan = scan_epochs(spec_for, data, candidates=args.candidates, seeds=args.seeds,
                           stop_at_first_pass=not args.all_candidates, progress=not args.no_progress, on_row=on_row)
    finally:
        torch.set_num_threads(threads)
    context = {"configured_epochs": entry["train"].get("epochs", config["train_defaults"]["epochs"]),
               "config": str(config_path), "candidates": args.candidates, "seeds": args.seeds,
               "stop at first pass": not args.all_candidates, "device": str(device), "torch threads": args.threads,
               "torch": torch.__version__, "wall time": f"{time.perf_counter() - start:.0f} s",
               "date": datetime.date.today().isoformat()}
    with atomic_path(md_path) as tmp:
        tmp.write_text(decision_markdown(args.task, scan.decision, scan.rows, context))
    print(decision_text(scan.decision))
    print(f"wrote {csv_path} and {md_path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "epoch-scan":
            return epoch_scan_command(args)
        if args.command == "predict":
            summary = predict(args)
            for warning in summary["warnings"]:
                print(f"prunelimit: warning: {warning}", file=sys.stderr)
            if args.json:
                print(json.dumps(summary, indent=2))
            else:
                _print_summary(summary)
    except (PrunelimitError, FloatingPointError, json.JSONDecodeError) as err:
        print(f"prunelimit: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
