#!/usr/bin/env bash
# Run by Snakemake (--sdm conda) inside the freshly created environment, from the workflow's
# working directory: install this checkout's prunelimit without touching the pinned dependencies.
# Editable, so the environment follows the library's code (Snakemake rebuilds an environment only
# when its .yaml or this script changes). Run snakemake from the repository root, or set
# PRUNELIMIT_ROOT to it when using --directory.
set -euo pipefail
root=${PRUNELIMIT_ROOT:-$PWD}
[[ -f $root/pyproject.toml && -d $root/src/prunelimit ]] || {
  echo "post-deploy: $root is not the prunelimit repository; set PRUNELIMIT_ROOT" >&2
  exit 1
}
python -m pip install --no-deps --no-build-isolation -e "$root"
