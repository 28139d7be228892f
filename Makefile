# Two entry points, each bootstrapping .venv from the pinned lock on a fresh machine:
#   make reproduce   set up, then run the default (mini) pipeline: snakemake --cores all
#   make test        set up, then run the test suite (slow tests excluded: `make test-slow` runs them,
#                    `make test-all` runs everything)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned by the constraints file so no later install can swap in a CUDA build.
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c envs/constraints.txt

.PHONY: setup reproduce test test-slow test-all test-slurm check-slurm smoke paper-dryrun report bench lint clean

$(STAMP): envs/requirements.lock envs/constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r envs/requirements.lock
	$(PIP_INSTALL) --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

reproduce: setup
	$(BIN)/snakemake --cores all

# One end-to-end run of the default DAG at test scale (tests/conftest.py mini_run, tests/quick_scale.yaml)
# and everything that can reuse it: at most 8 min on 2 cores. --durations lists the slowest tests, to keep it so.
test: setup
	$(BIN)/python -m pytest -m "not slow" --durations=12

# The whole-pipeline tests (the default preset at full scale, smoke preset, --sdm conda, resume after a
# kill, ...); the SLURM ones are `make test-slurm`'s.
test-slow: setup
	$(BIN)/python -m pytest -m "slow and not slurm" --durations=12

test-all: setup
	$(BIN)/python -m pytest

# The SLURM profile end to end on a one-node SLURM started on this machine (root + apt-get; the
# tests skip otherwise, saying why, but fail under CI=true): tests/slurm/start_cluster.sh, then tests/test_slurm.py.
test-slurm: setup
	$(BIN)/python -m pytest -m slurm -s

# Before `snakemake --profile workflow/profiles/slurm`: SLURM answers, the partition exists, status polling works.
check-slurm: setup
	$(BIN)/python scripts/check_slurm.py

# On a GPU machine (a CUDA build of torch in .venv), at most ~10 min: the smoke preset with device=cuda,
# float64 HVP and Lanczos against the CPU (<= 1e-8), one timed HVP chunk per paper task against
# results/paper/plan.csv. Without CUDA it says so in one line and exits 0. Options:
# make check-gpu GPU_CHECK_ARGS="--skip-smoke" (python -m prunelimit.gpu_check --help).
.PHONY: check-gpu
check-gpu: setup
	$(BIN)/python -m prunelimit.gpu_check $(GPU_CHECK_ARGS)

smoke: setup
	$(BIN)/snakemake --cores all --configfile workflow/presets/smoke.yaml

paper-dryrun: setup
	$(BIN)/snakemake -n --configfile workflow/presets/paper.yaml

report: setup
	$(BIN)/snakemake --cores all --report results/mini/report.html

bench: setup
	$(BIN)/python benchmarks/hessian.py

# The evidence for each main-study task's epoch count E (config.yaml's L1 regime rule): its dense and L1
# recipes trained at E = 40, 80, 160, ... until the rule passes (hours on 2 cores); the rows and the
# decision of each task go to docs/epoch_scan/<task>.csv and .md (prunelimit epoch-scan --help).
.PHONY: epoch-scan
epoch-scan: setup
	tasks=$$($(BIN)/python -c 'import yaml; from prunelimit.config import main_study_tasks, validate_config; c = yaml.safe_load(open("config.yaml")); validate_config(c); print(*main_study_tasks(c))') && for task in $$tasks; do $(BIN)/prunelimit epoch-scan --config config.yaml --task $$task --out docs/epoch_scan/$$task.csv || exit 1; done

# Static checks, stopping at the first finding: the workflow's formatting (snakefmt), Snakemake's
# linter with each preset (each one shapes its own DAG), then ruff on the Python code (pyproject.toml).
WORKFLOW_FILES := Snakefile $(wildcard workflow/rules/*.smk)
PRESETS := config.yaml workflow/presets/paper.yaml workflow/presets/smoke.yaml
lint: setup
	$(BIN)/snakefmt --check $(WORKFLOW_FILES)
	for preset in $(PRESETS); do $(BIN)/snakemake --lint --configfile $$preset || exit 1; done
	$(BIN)/ruff check .

clean:
	rm -rf .snakemake results/mini
