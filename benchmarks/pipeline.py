"""Benchmark: the mini pipeline cold, its job times and critical path, a no-op rerun, one figure rebuilt
and the paper preset's dry run, each against a time budget.

    .venv/bin/python benchmarks/pipeline.py [--workdir DIR] [--max-cold 600] [--max-noop 3] ...

Every step runs this venv's `snakemake` on this repository's Snakefile in a scratch directory
(`--directory`), so the repository's own results/ is never touched:

1. cold run: `snakemake --cores all` in an empty directory; its wall time, and its CPU time as the
   OS counts it for snakemake and every job process (user + system of waited children).
2. job times: the `benchmark:` TSV every rule writes under results/<preset>/benchmarks/ gives each
   job's wall seconds (column `s`) and the CPU seconds of its processes (`cpu_time`): their sums,
   and the ten slowest jobs. Snakemake samples `cpu_time` (every 0.5 s for a job's first 30 s, then
   every 30 s) and writes its last sample, so it undercounts a job by up to one interval, and a job
   over before the first sample has `NA`, counted here as 0: the CPU sum is a lower bound.
3. critical path: the heaviest chain of dependent jobs, each weighted by its `s` (below).
4. no-op rerun: `snakemake --cores all` again, which must find nothing to do.
5. one figure: results/<preset>/figures/pruning_curves.pdf deleted and rebuilt as the only target;
   exactly one job (fig_pruning_curves) may run.
6. paper dry run: `snakemake -n --configfile workflow/presets/paper.yaml` in an empty directory.

Steps 4-6 are timed --repeats times and reported as the median. The exit status is 1 when a time
exceeds its budget (or the no-op rerun had work, or the figure rebuild ran other jobs), else 0.

The critical path. `snakemake -n --forceall` in the finished directory prints every job of the DAG
with its input, output and benchmark files. Job B depends on job A when one of A's outputs is one of
B's inputs: these are the edges `snakemake --dag` draws (its node labels omit wildcards that the
inputs already fix, so they cannot be matched to benchmark files; the printed jobs can). With each
job weighted by its benchmark `s` (0 for rules without one, such as `all`), the heaviest chain is
found in one pass over the jobs in topological order: a job finishes at its own time plus the
latest finish among the jobs it depends on. The critical path is the wall time no number of cores
could beat with these job times; summed CPU time over the cores is the other lower bound, so the
cold wall time is to be read against both.
"""

from __future__ import annotations

import argparse
import csv
import graphlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "workflow" / "presets" / "paper.yaml"
FIGURE = "figures/pruning_curves.pdf"
FIGURE_RULE = "fig_pruning_curves"
NOTHING_TO_DO = "Nothing to be done"


# ---------------------------------------------------------------------------------------------
# The DAG, job times and the critical path (pure functions: tests/test_benchmark_pipeline.py)
# ---------------------------------------------------------------------------------------------


@dataclass
class Job:
    jobid: int
    rule: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    benchmark: str | None = None
    wildcards: str = ""

    @property
    def label(self) -> str:
        return f"{self.rule} {self.wildcards}".strip()


JOB_HEADER = re.compile(r"^(?:local)?rule (\w+):$")
JOB_FIELD = re.compile(r"^\s+(\w+): (.*)$")


def _files(value: str) -> list[str]:
    return [name for name in value.split(", ") if name]


def parse_jobs(snakemake_output: str) -> dict[int, Job]:
    """The jobs Snakemake printed (a dry run, or a real run as jobs start), by jobid.

    Each job is a `rule NAME:` (or `localrule NAME:`) line followed by indented `key: value` lines;
    input and output lists are comma-separated.
    """
    jobs: dict[int, Job] = {}
    rule, fields = None, {}

    def close() -> None:
        if rule is not None and "jobid" in fields:
            jobid = int(fields["jobid"])
            jobs[jobid] = Job(jobid, rule, _files(fields.get("input", "")), _files(fields.get("output", "")),
                              fields.get("benchmark"), fields.get("wildcards", ""))

    for line in snakemake_output.splitlines():
        header = JOB_HEADER.match(line)
        if header:
            close()
            rule, fields = header[1], {}
            continue
        job_field = JOB_FIELD.match(line) if rule is not None else None
        if job_field:
            fields[job_field[1]] = job_field[2]
        else:  # any other line ends the block
            close()
            rule, fields = None, {}
    close()
    return jobs


def dependencies(jobs: dict[int, Job]) -> dict[int, set[int]]:
    """For each job, the jobs that produce one of its inputs."""
    producer = {output: job.jobid for job in jobs.values() for output in job.outputs}
    return {jobid: {producer[name] for name in job.inputs if name in producer} for jobid, job in jobs.items()}


@dataclass
class JobTime:
    wall_s: float
    cpu_s: float


def read_benchmark(path: str | os.PathLike) -> JobTime:
    """Mean `s` and `cpu_time` over the rows of a Snakemake benchmark TSV (one row per repeat);
    a value Snakemake could not measure (`-` or `NA`) counts as 0."""
    def number(text: str | None) -> float:
        try:
            return float(text)
        except (TypeError, ValueError):
            return 0.0

    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if not rows:
        raise ValueError(f"benchmark file {path} has no rows")
    return JobTime(statistics.fmean(number(r.get("s")) for r in rows),
                   statistics.fmean(number(r.get("cpu_time")) for r in rows))


def job_times(jobs: dict[int, Job], workdir: Path) -> dict[int, JobTime]:
    """The benchmark times of the jobs that have a benchmark file in ``workdir``."""
    return {jobid: read_benchmark(workdir / job.benchmark) for jobid, job in jobs.items()
            if job.benchmark and (workdir / job.benchmark).is_file()}


def critical_path(duration: dict[int, float], depends_on: dict[int, set[int]]) -> tuple[float, list[int]]:
    """Length and jobs (first to last) of the heaviest chain through the DAG; jobs without a
    duration weigh 0. Of chains equally heavy, the one ending first in topological order is
    taken, so a 0-s job at the end (such as `all`) is left off."""
    if not depends_on:
        return 0.0, []
    finish: dict[int, float] = {}
    previous: dict[int, int | None] = {}
    for jobid in graphlib.TopologicalSorter(depends_on).static_order():
        before = max(depends_on.get(jobid, ()), key=finish.__getitem__, default=None)
        previous[jobid] = before
        finish[jobid] = duration.get(jobid, 0.0) + (finish[before] if before is not None else 0.0)
    last: int | None = max(finish, key=finish.__getitem__)
    length, chain = finish[last], []
    while last is not None:
        chain.append(last)
        last = previous[last]
    return length, chain[::-1]


def over_budget(measured: dict[str, float], budgets: dict[str, float]) -> list[str]:
    """One line per measured time above its budget."""
    return [f"{name}: {measured[name]:.1f} s > budget {budget:g} s"
            for name, budget in budgets.items() if name in measured and measured[name] > budget]


# ---------------------------------------------------------------------------------------------
# Running Snakemake
# ---------------------------------------------------------------------------------------------


def snakemake_command() -> str:
    beside = Path(sys.executable).with_name("snakemake")  # this venv's
    found = str(beside) if beside.exists() else shutil.which("snakemake")
    if found is None:
        sys.exit("benchmarks/pipeline.py: no snakemake beside this Python or on PATH")
    return found


@dataclass
class Run:
    seconds: float
    cpu_seconds: float  # user + system of snakemake and every job it ran (they are its waited children)
    output: str
    returncode: int


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_snakemake(workdir: Path, configfile: Path, *args: str) -> Run:
    cmd = [snakemake_command(), "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile), *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                      os.environ.get("PYTHONPATH")]))}
    start, cpu_before = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return Run(time.perf_counter() - start, children_cpu_seconds() - cpu_before, proc.stdout + proc.stderr,
               proc.returncode)


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        sys.exit(f"benchmarks/pipeline.py: {what} failed (exit {run.returncode}):\n{run.output[-4000:]}")
    return run


def preset_of(configfile: Path) -> str:
    import yaml

    return yaml.safe_load(configfile.read_text())["preset"]


def median_run(repeats: int, step) -> tuple[float, list[Run]]:
    runs = [step() for _ in range(repeats)]
    return statistics.median(r.seconds for r in runs), runs


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0].replace("\n", " "),
        epilog=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configfile", type=Path, default=ROOT / "config.yaml",
                        help="preset to benchmark (default: config.yaml, the mini preset)")
    parser.add_argument("--workdir", type=Path,
                        help="scratch directory for the runs (default: a new temporary one, removed at the end); "
                             "it must be empty unless --no-cold")
    parser.add_argument("--no-cold", action="store_true",
                        help="skip the cold run: analyse the finished run already in --workdir")
    parser.add_argument("--cores", default="all", help="snakemake --cores for the cold and no-op runs (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of the no-op, one-figure and paper dry-run steps; the median is reported")
    parser.add_argument("--top", type=int, default=10, help="how many of the slowest jobs to list")
    parser.add_argument("--max-cold", type=float, default=600, help="budget of the cold run, seconds (600)")
    parser.add_argument("--max-noop", type=float, default=3, help="budget of the no-op rerun, seconds (3)")
    parser.add_argument("--max-figure", type=float, default=10, help="budget of the one-figure rebuild, seconds (10)")
    parser.add_argument("--max-paper-dry-run", type=float, default=4,
                        help="budget of the paper preset's dry run, seconds (4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configfile = args.configfile.resolve()
    preset = preset_of(configfile)
    if args.no_cold and args.workdir is None:
        sys.exit("benchmarks/pipeline.py: --no-cold needs --workdir (a finished run)")
    temporary = args.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="prunelimit-bench-")) if temporary else args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    if not args.no_cold and any(workdir.iterdir()):
        sys.exit(f"benchmarks/pipeline.py: {workdir} is not empty; a cold run needs an empty directory")
    measured: dict[str, float] = {}
    problems: list[str] = []
    try:
        print(f"preset {preset} ({configfile}), scratch directory {workdir}, {os.cpu_count()} CPUs")
        if not args.no_cold:
            cold = checked(run_snakemake(workdir, configfile, "--cores", args.cores), "the cold run")
            measured["cold"] = cold.seconds
            print(f"cold run: {cold.seconds:.1f} s wall (budget {args.max_cold:g} s), {cold.cpu_seconds:.1f} s CPU "
                  f"(snakemake and all its jobs, as the OS counts them)")

        jobs = parse_jobs(checked(run_snakemake(workdir, configfile, "-n", "--forceall"), "the DAG listing").output)
        times = job_times(jobs, workdir)
        wall = {jobid: t.wall_s for jobid, t in times.items()}
        length, chain = critical_path(wall, dependencies(jobs))
        cpu_sum, wall_sum = sum(t.cpu_s for t in times.values()), sum(wall.values())
        print(f"jobs: {len(jobs)}, {len(times)} with a benchmark file; summed job wall {wall_sum:.1f} s, "
              f"summed CPU {cpu_sum:.1f} s (over {os.cpu_count()} CPUs: {cpu_sum / (os.cpu_count() or 1):.1f} s)")
        print(f"critical path: {length:.1f} s through {len(chain)} jobs")
        for jobid in chain:
            if jobid in wall:
                print(f"  {wall[jobid]:8.1f} s  {jobs[jobid].label}")
        print(f"{args.top} slowest jobs (wall s, CPU s):")
        for jobid in sorted(times, key=lambda j: wall[j], reverse=True)[:args.top]:
            print(f"  {wall[jobid]:8.1f} {times[jobid].cpu_s:8.1f}  {jobs[jobid].label}")

        measured["noop"], runs = median_run(args.repeats, lambda: checked(
            run_snakemake(workdir, configfile, "--cores", args.cores), "the no-op rerun"))
        busy = [r for r in runs if NOTHING_TO_DO not in r.output]
        print(f"no-op rerun: {measured['noop']:.2f} s (median of {args.repeats}; budget {args.max_noop:g} s)"
              + (f"; {len(busy)} run(s) had work to do" if busy else ", nothing to do"))
        if busy:
            problems.append(f"noop: the rerun did not say '{NOTHING_TO_DO}':\n{busy[0].output[-2000:]}")

        figure = workdir / "results" / preset / FIGURE

        def rebuild_figure() -> Run:
            figure.unlink()
            target = f"results/{preset}/{FIGURE}"
            return checked(run_snakemake(workdir, configfile, "--cores", args.cores, target), "the figure rebuild")

        measured["figure"], runs = median_run(args.repeats, rebuild_figure)
        rules = sorted({job.rule for r in runs for job in parse_jobs(r.output).values()})
        print(f"one figure ({FIGURE}): {measured['figure']:.2f} s (median of {args.repeats}; "
              f"budget {args.max_figure:g} s), jobs run: {', '.join(rules)}")
        if rules != [FIGURE_RULE] or not figure.is_file():
            problems.append(f"figure: rebuilding {FIGURE} ran {rules}, expected only {FIGURE_RULE}")

        def paper_dry_run() -> Run:
            with tempfile.TemporaryDirectory(prefix="prunelimit-paper-dry-") as empty:
                return checked(run_snakemake(Path(empty), PAPER, "-n"), "the paper dry run")

        measured["paper_dry_run"], _ = median_run(args.repeats, paper_dry_run)
        print(f"paper dry run: {measured['paper_dry_run']:.2f} s (median of {args.repeats}; "
              f"budget {args.max_paper_dry_run:g} s)")
    finally:
        if temporary:
            shutil.rmtree(workdir, ignore_errors=True)

    problems += over_budget(measured, {"cold": args.max_cold, "noop": args.max_noop, "figure": args.max_figure,
                                       "paper_dry_run": args.max_paper_dry_run})
    for problem in problems:
        print(f"OVER BUDGET or WRONG: {problem}", file=sys.stderr)
    print("within budget" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
