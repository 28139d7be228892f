"""benchmarks/pipeline.py's DAG, job-time and critical-path logic on a small synthetic run (no pipeline)."""

import textwrap

import pytest

from pipeline_utils import load_benchmark

bench = load_benchmark("pipeline")

# A train job's block as Snakemake prints it; the two jobs below differ in task, jobid and what follows.
TRAIN_JOB = """\
    [Thu Nov 26 02:54:03 2026]
    rule train:
        input: results/t/data/d.npz
        output: results/t/train/{task}/model.pt, results/t/train/{task}/metrics.json
        log: results/t/logs/train/{task}.log
        jobid: {jobid}
        benchmark: results/t/benchmarks/train/{task}.tsv"""

# What `snakemake -n --forceall` prints, cut to five jobs: data -> train a, train b -> fig (a, b) -> all,
# with a date line between blocks, a reason line, a job without wildcards and the job-stats table.
DRY_RUN = textwrap.dedent(f"""\
    Building DAG of jobs...
    Job stats:
    job        count
    -------  -------
    all            1
    dataset        1
    fig            1
    train          2
    total          5

    [Thu Nov 26 02:54:03 2026]
    rule dataset:
        output: results/t/data/d.npz
        log: results/t/logs/data/d.log
        jobid: 2
        benchmark: results/t/benchmarks/data/d.tsv
        reason: Missing output files: results/t/data/d.npz
        wildcards: dataset=d
        resources: tmpdir=/tmp
{TRAIN_JOB.format(task="a", jobid=1)}
        reason: Input files updated by another job: results/t/data/d.npz
        wildcards: task=a
        resources: tmpdir=/tmp, gpu=1
{TRAIN_JOB.format(task="b", jobid=3)}
        wildcards: task=b
    [Thu Nov 26 02:54:03 2026]
    rule fig:
        input: results/t/train/a/metrics.json, results/t/train/b/metrics.json, results/t/other.csv
        output: results/t/figures/f.pdf, results/t/figures/f.png
        log: results/t/logs/figures/f.log
        jobid: 4
        benchmark: results/t/benchmarks/figures/f.tsv
    [Thu Nov 26 02:54:03 2026]
    localrule all:
        input: results/t/figures/f.pdf
        jobid: 0
        reason: Input files updated by another job: results/t/figures/f.pdf
        resources: tmpdir=/tmp
    Job stats:
    job        count
    total          5
    This was a dry-run (flag -n). The order of jobs does not reflect the order of execution.
""")

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _benchmark(path, *rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(f"{s}\t0:00:01\t1\t1\t1\t1\t0\t0\t50\t{cpu}\n" for s, cpu in rows))


@pytest.fixture
def run(tmp_path):
    """The synthetic jobs with their benchmark files: train b (9 s) is slower than train a (4 s)."""
    bm = tmp_path / "results" / "t" / "benchmarks"
    _benchmark(bm / "data" / "d.tsv", (1.0, "NA"))  # over before Snakemake's first CPU sample
    _benchmark(bm / "train" / "a.tsv", (4.0, 7.5))
    _benchmark(bm / "train" / "b.tsv", (8.0, 15.0), (10.0, 17.0))  # two repeats: the mean counts
    _benchmark(bm / "figures" / "f.tsv", (2.0, 1.5))
    return tmp_path, bench.parse_jobs(DRY_RUN)


def test_jobs_are_parsed_with_their_files(run):
    _, jobs = run
    assert sorted(jobs) == [0, 1, 2, 3, 4]
    assert [jobs[i].rule for i in range(5)] == ["all", "train", "dataset", "train", "fig"]
    assert jobs[1].inputs == ["results/t/data/d.npz"]
    assert jobs[1].outputs == ["results/t/train/a/model.pt", "results/t/train/a/metrics.json"]
    assert jobs[1].benchmark == "results/t/benchmarks/train/a.tsv" and jobs[1].label == "train task=a"
    assert jobs[2].inputs == [] and jobs[0].benchmark is None and jobs[4].label == "fig"


def test_edges_join_outputs_to_inputs(run):
    _, jobs = run
    # results/t/other.csv is a source file: no job makes it, so no edge
    assert bench.dependencies(jobs) == {0: {4}, 1: {2}, 2: set(), 3: {2}, 4: {1, 3}}


def test_job_times_read_every_benchmark_file(run):
    workdir, jobs = run
    times = bench.job_times(jobs, workdir)
    assert sorted(times) == [1, 2, 3, 4]  # `all` has no benchmark
    assert (times[3].wall_s, times[3].cpu_s) == (9.0, 16.0)
    assert (times[2].wall_s, times[2].cpu_s) == (1.0, 0.0)


def test_critical_path_takes_the_slower_branch(run):
    workdir, jobs = run
    wall = {jobid: t.wall_s for jobid, t in bench.job_times(jobs, workdir).items()}
    length, chain = bench.critical_path(wall, bench.dependencies(jobs))
    assert chain == [2, 3, 4]  # dataset -> train b -> fig (`all`, 0 s, adds nothing)
    assert length == pytest.approx(1 + 9 + 2)
    wall[1] = 20.0  # now train a is the long branch
    assert bench.critical_path(wall, bench.dependencies(jobs)) == (pytest.approx(23.0), [2, 1, 4])


def test_critical_path_of_independent_chains_and_of_nothing():
    depends_on = {1: set(), 2: {1}, 3: set(), 4: {3}, 5: set()}
    assert bench.critical_path({1: 1, 2: 1, 3: 5, 4: 0.5, 5: 6}, depends_on) == (6, [5])
    assert bench.critical_path({1: 1, 2: 1, 3: 5, 4: 1.5, 5: 6}, depends_on) == (6.5, [3, 4])
    assert bench.critical_path({}, {}) == (0.0, [])


def test_a_real_run_prints_the_same_blocks():
    """During a run, Snakemake prints each job as it starts, between its own log lines."""
    output = ("Select jobs to execute...\n[Thu Nov 26 03:10:00 2026]\nrule fig_pruning_curves:\n"
              "    input: results/mini/a.json\n    output: results/mini/figures/pruning_curves.pdf\n"
              "    jobid: 0\n    benchmark: results/mini/benchmarks/figures/pruning_curves.tsv\n"
              "Finished jobid: 0 (Rule: fig_pruning_curves)\n1 of 1 steps (100%) done\n")
    jobs = bench.parse_jobs(output)
    assert [job.rule for job in jobs.values()] == ["fig_pruning_curves"]


def test_budgets():
    measured = {"cold": 610.0, "noop": 2.0, "figure": 10.0}
    assert bench.over_budget(measured, {"cold": 600, "noop": 3, "figure": 10, "paper_dry_run": 4}) == [
        "cold: 610.0 s > budget 600 s"]


def test_help_explains_every_budget_and_the_method(capsys):
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for option, default in (("--max-cold", "600"), ("--max-noop", "3"), ("--max-figure", "10"),
                            ("--max-paper-dry-run", "4")):
        assert option in text and f"({default})" in text, option
    assert "critical path" in text and "topological order" in text
