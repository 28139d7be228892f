# Two entry points, each bootstrapping .venv from the pinned lock on a fresh machine:
#   make reproduce   set up, then run the default (mini) pipeline: snakemake --cores all
#   make test        set up, then run the test suite (slow tests excluded; `make test-all` runs them)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch is pinned by the constraints file so no later install can swap in a CUDA build.
PIP_INSTALL := $(BIN)/python -m pip install --disable-pip-version-check -q -c envs/constraints.txt

.PHONY: setup reproduce test test-all test-slurm check-slurm smoke paper-dryrun report bench clean

$(STAMP): envs/requirements.lock envs/constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) -r envs/requirements.lock
	$(PIP_INSTALL) --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

reproduce: setup
	$(BIN)/snakemake --cores all

test: setup
	$(BIN)/python -m pytest -m "not slow" --durations=12  # the slowest tests, to keep CI under 30 min

test-all: setup
	$(BIN)/python -m pytest

# The SLURM profile end to end on a one-node SLURM started on this machine (root + apt-get; the
# tests skip otherwise): tests/slurm/start_cluster.sh, then tests/test_slurm.py.
test-slurm: setup
	$(BIN)/python -m pytest -m slurm -s

# Before `snakemake --profile workflow/profiles/slurm`: SLURM answers, the partition exists, status polling works.
check-slurm: setup
	$(BIN)/python scripts/check_slurm.py

smoke: setup
	$(BIN)/snakemake --cores all --configfile workflow/presets/smoke.yaml

paper-dryrun: setup
	$(BIN)/snakemake -n --configfile workflow/presets/paper.yaml

report: setup
	$(BIN)/snakemake --cores all --report results/mini/report.html

bench: setup
	$(BIN)/python benchmarks/hessian.py

clean:
	rm -rf .snakemake results/mini
