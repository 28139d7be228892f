"""The epoch scan behind each task's E: the evidence for config.yaml's L1 regime rule.

config.yaml (the comment block above ``tasks:``) and docs/method.md ("The training regime") state
the rule: E is the smallest of 40, 80, 160, 320, 640 at which, over seeds 0 and 1,

  (a) the L1 models' mean test accuracy is at most 1.2 points below the dense models' trained for
      the same E (one-sided: an L1 model that beats an overfitting dense one passes), and
  (b) for each seed the share of weights with |w| < 1e-3 changes by at most 0.02 over the last
      tenth of the epochs (equilibrium).

:func:`scan_epochs` trains both variants at each candidate E through :func:`prunelimit.train.train_and_save`,
the function the pipeline's train rule calls, so the accuracies, the |w| < 1e-3 share and its drift
(``small_weight_share_drift_last_tenth``) are the pipeline's own numbers. :func:`decide` applies the
rule to the rows alone. The criteria live here once (:data:`CANDIDATES` ... :data:`MAX_DRIFT`).
``prunelimit epoch-scan`` (cli.py) runs it for one task of a config; ``make epoch-scan`` for every
main-study task into docs/epoch_scan/.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from statistics import mean
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from .data import TensorData

# The regime rule's constants (config.yaml, above `tasks:`; docs/method.md, "The training regime").
CANDIDATES = (40, 80, 160, 320, 640)  # E is the smallest of these that passes
SEEDS = (0, 1)  # (a) averages over them, (b) holds for each
MAX_ACCURACY_DROP = 0.012  # (a): mean L1 test accuracy at most 1.2 points below dense's (one-sided)
MAX_DRIFT = 0.02  # (b): |net change of the |w| < 1e-3 share over the last tenth of the epochs|
SLACK = 1e-12  # float round-off at a bound (e.g. a drop of exactly 0.012) counts as within it

# One row per (E, seed): what the rule reads, then context.
COLUMNS = ["epochs", "seed", "dense_test_acc", "l1_test_acc", "l1_train_acc", "small_weight_share",
           "drift_last_tenth", "l1", "dense_train_acc", "l1_shrinkage", "wall_time_s"]

SpecFor = Callable[[str, int, int], dict]  # (variant "dense" | "l1", epochs, seed) -> a task spec


class EpochScan(NamedTuple):
    rows: list[dict]  # COLUMNS, in training order
    decision: dict  # see decide()


def judge_epochs(rows: Sequence[dict], max_accuracy_drop: float = MAX_ACCURACY_DROP,
                 max_drift: float = MAX_DRIFT) -> dict:
    """Criteria (a) and (b) at one E, from that E's rows (one per seed)."""
    dense = mean(r["dense_test_acc"] for r in rows)
    l1 = mean(r["l1_test_acc"] for r in rows)
    drifts = [r["drift_last_tenth"] for r in rows]
    accuracy_ok = dense - l1 <= max_accuracy_drop + SLACK
    drift_ok = all(d is not None and abs(d) <= max_drift + SLACK for d in drifts)
    return {"epochs": int(rows[0]["epochs"]), "seeds": [int(r["seed"]) for r in rows],
            "dense_mean_test_acc": dense, "l1_mean_test_acc": l1, "accuracy_drop": dense - l1,
            "accuracy_ok": accuracy_ok, "drifts": drifts,
            "max_abs_drift": max((abs(d) for d in drifts if d is not None), default=None),
            "drift_ok": drift_ok, "passes": accuracy_ok and drift_ok}


def decide(rows: Iterable[dict], max_accuracy_drop: float = MAX_ACCURACY_DROP, max_drift: float = MAX_DRIFT) -> dict:
    """The rule applied to scan rows: ``{"chosen_epochs": E or None, "per_epochs": [judge_epochs(...)
    for each E scanned, ascending], "max_accuracy_drop", "max_drift"}``. E is the smallest scanned
    candidate that passes; None when none does (scan further, or the recipe is wrong)."""
    by_epochs: dict[int, list[dict]] = {}
    for row in rows:
        by_epochs.setdefault(int(row["epochs"]), []).append(row)
    per_epochs = [judge_epochs(by_epochs[e], max_accuracy_drop, max_drift) for e in sorted(by_epochs)]
    chosen = next((p["epochs"] for p in per_epochs if p["passes"]), None)
    return {"chosen_epochs": chosen, "per_epochs": per_epochs, "max_accuracy_drop": max_accuracy_drop,
            "max_drift": max_drift}


def _train(spec: dict, data: TensorData, folder: Path, progress: bool) -> dict:
    from .train import train_and_save

    return train_and_save(spec, data, folder / "model.pt", folder / "metrics.json", progress=progress)


def scan_epochs(spec_for: SpecFor, data: TensorData, candidates: Sequence[int] = CANDIDATES,
                seeds: Sequence[int] = SEEDS, max_accuracy_drop: float = MAX_ACCURACY_DROP,
                max_drift: float = MAX_DRIFT, stop_at_first_pass: bool = True, progress: bool = True,
                on_row: Callable[[dict], None] | None = None) -> EpochScan:
    """Train ``spec_for("dense", E, seed)`` and ``spec_for("l1", E, seed)`` for each candidate E
    (ascending) and seed, and apply the regime rule (:func:`decide`).

    ``spec_for`` returns a spec as :func:`prunelimit.config.task_spec` does, with ``train.epochs``
    = E and ``train.seed`` = seed (the CLI: the task's own recipe, epochs replaced; an
    ``l1_shrinkage`` target is then met at every E, λ following from the E's own steps). Each model
    is trained by :func:`prunelimit.train.train_and_save` into a temporary folder and discarded; its
    metrics give the row. With ``stop_at_first_pass`` the scan ends after the first E that passes
    (larger E cannot change the choice). ``on_row`` sees each row as it is made (progress, partial
    files); ``progress`` shows the training bars.
    """
    candidates = sorted(int(e) for e in candidates)
    if not candidates or not seeds or candidates[0] < 1:
        raise ValueError(f"scan_epochs needs at least one candidate ≥ 1 and one seed, got {candidates}, {list(seeds)}")
    rows: list[dict] = []
    for epochs in candidates:
        for seed in seeds:
            with tempfile.TemporaryDirectory(prefix="epoch_scan_") as tmp:
                runs = {}
                for variant in ("dense", "l1"):
                    spec = spec_for(variant, epochs, int(seed))
                    if int(spec["train"]["epochs"]) != epochs or int(spec["train"]["seed"]) != int(seed):
                        raise ValueError(f"spec_for({variant!r}, {epochs}, {seed}) returned epochs "
                                         f"{spec['train']['epochs']}, seed {spec['train']['seed']}")
                    folder = Path(tmp) / variant
                    folder.mkdir()
                    runs[variant] = _train(spec, data, folder, progress)
            dense, l1 = runs["dense"], runs["l1"]
            row = {"epochs": epochs, "seed": int(seed), "dense_test_acc": dense["test_acc"],
                   "l1_test_acc": l1["test_acc"], "l1_train_acc": l1["train_acc"],
                   "small_weight_share": l1["small_weight_share"],
                   "drift_last_tenth": l1["small_weight_share_drift_last_tenth"], "l1": l1["train"]["l1"],
                   "dense_train_acc": dense["train_acc"], "l1_shrinkage": l1["l1_shrinkage"],
                   "wall_time_s": dense["wall_time_s"] + l1["wall_time_s"]}
            rows.append(row)
            if on_row is not None:
                on_row(row)
        if stop_at_first_pass and judge_epochs(rows[-len(seeds):], max_accuracy_drop, max_drift)["passes"]:
            break
    return EpochScan(rows, decide(rows, max_accuracy_drop, max_drift))


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def decision_text(decision: dict) -> str:
    """One line per scanned E and the choice, for the console."""
    lines = []
    for p in decision["per_epochs"]:
        drifts = ", ".join(_fmt(d, 3) for d in p["drifts"])
        lines.append(f"E = {p['epochs']}: L1 / dense mean test acc {p['l1_mean_test_acc']:.4f} / "
                     f"{p['dense_mean_test_acc']:.4f} (drop {p['accuracy_drop']:+.4f}, (a) {_fmt(p['accuracy_ok'])}); "
                     f"|w| < 1e-3 share drift {drifts} ((b) {_fmt(p['drift_ok'])})")
    chosen = decision["chosen_epochs"]
    lines.append(f"chosen E = {chosen}" if chosen is not None else "no scanned E passes the rule")
    return "\n".join(lines)


def decision_markdown(task: str, decision: dict, rows: Sequence[dict], context: dict) -> str:
    """The .md beside the scan's CSV: the rule, the verdict per E, the rows, how it was run."""
    chosen = decision["chosen_epochs"]
    configured = context.get("configured_epochs")
    out = [f"# Epoch scan: {task}", "",
           "The L1 regime rule (config.yaml, above `tasks:`): E is the smallest candidate at which (a) the L1 "
           f"models' mean test accuracy over the seeds is at most {decision['max_accuracy_drop']:g} below the "
           f"dense models' trained as long, and (b) for each seed the share of weights with |w| < 1e-3 changes "
           f"by at most {decision['max_drift']:g} over the last tenth of the epochs.", "",
           f"**Chosen E: {chosen if chosen is not None else 'none of the scanned candidates'}**"
           + (f" (the config trains {configured})" if configured is not None else ""), "",
           "| E | dense mean test acc | L1 mean test acc | drop | (a) | drift per seed | (b) | passes |",
           "|---|---|---|---|---|---|---|---|"]
    for p in decision["per_epochs"]:
        drifts = ", ".join(_fmt(d, 3) for d in p["drifts"])
        out.append(f"| {p['epochs']} | {_fmt(p['dense_mean_test_acc'])} | {_fmt(p['l1_mean_test_acc'])} | "
                   f"{p['accuracy_drop']:+.4f} | {_fmt(p['accuracy_ok'])} | {drifts} | {_fmt(p['drift_ok'])} | "
                   f"{_fmt(p['passes'])} |")
    out += ["", "Rows (one per E and seed; the CSV beside this file holds them at full precision):", "",
            "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(f"{r[c]:.4g}" if c == "l1" else _fmt(r[c]) for c in COLUMNS) + " |" for r in rows]
    if context:
        out += ["", "Run: " + "; ".join(f"{k} {v}" for k, v in context.items() if k != "configured_epochs")]
    return "\n".join(out) + "\n"
