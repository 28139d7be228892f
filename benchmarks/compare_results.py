"""Do two finished pipeline runs have the same tables, to the last digit?

    .venv/bin/python benchmarks/compare_results.py BEFORE AFTER [--preset mini]
                                                   [--except-task TASK ...] [--except-column NAME ...]

BEFORE and AFTER are working directories of two finished runs (each with results/<preset>/). Every
table the run writes (results/<preset>/tables/**/*.csv) is compared cell by cell as text, so a
change in the last printed digit counts. Columns and rows of wall or CPU time differ between any
two runs and are left out (a column whose name contains "time" or "seconds"; a row whose label, a
text cell, ends in "(s)", as lomp_vs_sota's "prune time (s)" and "gradients (s)"). A refactor must leave every table
equal; the exit status is 1 when a table differs or exists in one run only, else 0.
--except-task leaves out the rows of a task a deliberate change touched (e.g. its dataset
replaced), --except-column a column a deliberate change added, so the rest is still checked.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def timing_column(name: str) -> bool:
    return "time" in name or "seconds" in name


def timing_row(cells) -> bool:
    return any(cell.endswith("(s)") for cell in cells)


def compare_table(before: Path, after: Path, except_tasks: tuple[str, ...] = (),
                  except_columns: tuple[str, ...] = ()) -> list[str]:
    """The differences between two CSV tables, one line each (empty: equal outside timing columns,
    ``except_columns`` and the rows of ``except_tasks``)."""
    old, new = (pd.read_csv(p, dtype=str, keep_default_na=False) for p in (before, after))
    old, new = (t.drop(columns=[c for c in except_columns if c in t.columns]) for t in (old, new))
    if except_tasks and "task" in old.columns and "task" in new.columns:
        old, new = (t[~t["task"].isin(except_tasks)].reset_index(drop=True) for t in (old, new))
    if list(old.columns) != list(new.columns):
        return [f"columns differ: {list(old.columns)} vs {list(new.columns)}"]
    if len(old) != len(new):
        return [f"{len(old)} rows vs {len(new)}"]
    columns = [c for c in old.columns if not timing_column(c)]
    timing = [i for i in range(len(old)) if timing_row(old.iloc[i]) or timing_row(new.iloc[i])]
    old, new = old.drop(index=timing), new.drop(index=timing)
    problems = []
    for column in columns:
        differs = old[column] != new[column]
        for row in differs[differs].index[:3]:
            problems.append(f"row {row}, {column}: {old.at[row, column]} vs {new.at[row, column]}")
        if differs.sum() > 3:
            problems.append(f"{column}: {int(differs.sum()) - 3} more rows differ")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path, help="working directory of the first finished run")
    parser.add_argument("after", type=Path, help="working directory of the second finished run")
    parser.add_argument("--preset", default="mini", help="results/<preset> to compare (default: mini)")
    parser.add_argument("--except-task", action="append", default=[], metavar="TASK",
                        help="leave out this task's rows (repeatable)")
    parser.add_argument("--except-column", action="append", default=[], metavar="NAME",
                        help="leave out this column wherever it appears (repeatable)")
    args = parser.parse_args(argv)
    roots = [d / "results" / args.preset / "tables" for d in (args.before, args.after)]
    for root in roots:
        if not root.is_dir():
            parser.error(f"{root} does not exist: is the run finished?")
    names = [sorted(p.relative_to(root) for p in root.rglob("*.csv")) for root in roots]
    failed = False
    for only, where in ((set(names[0]) - set(names[1]), "before"), (set(names[1]) - set(names[0]), "after")):
        for name in sorted(only):
            print(f"{name}: only in the {where} run")
            failed = True
    common = sorted(set(names[0]) & set(names[1]))
    for name in common:
        problems = compare_table(roots[0] / name, roots[1] / name, tuple(args.except_task),
                                 tuple(args.except_column))
        print(f"{name}: {'equal' if not problems else 'DIFFERS'}")
        for line in problems:
            print(f"    {line}")
        failed |= bool(problems)
    left_out = "".join(f"; {what} {', '.join(names)} left out" for what, names in
                       (("rows of", args.except_task), ("columns", args.except_column)) if names)
    verdict = "some differ" if failed else "all equal"
    print(f"{len(common)} tables compared: {verdict} (timing columns and rows left out{left_out})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
