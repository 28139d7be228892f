"""Pre-flight check before `snakemake --profile workflow/profiles/slurm` (also `make check-slurm`).

Checks, each with one clear message instead of a failed or hanging run:
1. SLURM's commands are on PATH and the controller answers `sinfo`;
2. the profile's partition (default-resources: slurm_partition) exists, and has GPUs (gres/gpu);
3. job-status polling will work: the plugin polls with `sacct` whenever it exists, which hangs
   forever on a cluster without an accounting database; there the profile (or the command line)
   must say `slurm-status-command: squeue`, and MinJobAge must cover 3x the initial status delay.

    python scripts/check_slurm.py [--profile DIR] [--partition NAME] [--status-command squeue]

Exit 0 when the run can go ahead, 1 with "check_slurm: error: ..." on stderr otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class CheckError(Exception):
    pass


def run(cmd: list[str], timeout: float = 20) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise CheckError(f"`{' '.join(cmd)}` did not answer within {timeout:.0f} s; is slurmctld up?") from None


def load_profile(directory: Path) -> dict:
    import yaml

    path = directory / "config.yaml"
    if not path.exists():
        raise CheckError(f"no profile at {path}")
    return yaml.safe_load(path.read_text()) or {}


def check(profile_dir: Path, partition: str | None, status_command: str | None) -> list[str]:
    notes = []
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        raise CheckError("SLURM not found: sinfo is not on PATH (run on the cluster's submit host, "
                         "or use --profile workflow/profiles/local)")
    profile = load_profile(profile_dir)
    defaults = profile.get("default-resources") or {}
    if isinstance(defaults, list):  # the `- key=value` form
        defaults = dict(item.split("=", 1) for item in defaults)
    partition = partition or str(defaults.get("slurm_partition", "")).strip("'\"") or None

    listing = run(["sinfo", "-h", "-o", "%R|%a|%G|%D"])
    if listing.returncode != 0:
        raise CheckError(f"sinfo failed: {listing.stderr.strip() or listing.stdout.strip()}")
    partitions = {}
    for line in listing.stdout.splitlines():
        name, avail, gres, nodes = line.split("|")
        partitions.setdefault(name, []).append((avail, gres, nodes))
    if not partitions:
        raise CheckError("sinfo lists no partitions")
    if partition is None:
        notes.append("no slurm_partition in the profile: jobs go to the cluster's default partition")
    elif partition not in partitions:
        raise CheckError(f"partition '{partition}' does not exist; partitions: {', '.join(sorted(partitions))} "
                         f"(set slurm_partition in {profile_dir / 'config.yaml'})")
    else:
        rows = partitions[partition]
        if all(avail != "up" for avail, _, _ in rows):
            raise CheckError(f"partition '{partition}' is not up ({', '.join(a for a, _, _ in rows)})")
        gres = ",".join(g for _, g, _ in rows)
        if "gpu" not in gres:
            raise CheckError(f"partition '{partition}' has no GPUs (gres: {gres}); the GPU rules ask for "
                             "--gpus=1 and would be rejected")
        notes.append(f"partition '{partition}' is up with gres {gres}")

    status_command = status_command or profile.get("slurm-status-command")
    init_delay = int(profile.get("slurm-init-seconds-before-status-checks", 40))
    if status_command != "squeue" and shutil.which("sacct"):
        probe = run(["sacct", "-n", "-X", "-o", "JobID", "-S", "now"])
        if probe.returncode != 0:
            raise CheckError(
                f"this cluster has no accounting database (sacct: {probe.stderr.strip()}); the SLURM plugin "
                "would poll with sacct and hang. Add `slurm-status-command: squeue` to "
                f"{profile_dir / 'config.yaml'} or pass --slurm-status-command squeue")
        notes.append("job status via sacct (accounting database present)")
    else:
        config = run(["scontrol", "show", "config"])
        match = re.search(r"^MinJobAge\s*=\s*(\d+)", config.stdout, re.M)
        min_job_age = int(match[1]) if match else None
        if min_job_age is not None and min_job_age < 3 * init_delay:
            raise CheckError(f"MinJobAge is {min_job_age} s, below 3 x slurm-init-seconds-before-status-checks "
                             f"({init_delay} s): squeue forgets finished jobs too early for the plugin")
        notes.append(f"job status via squeue (MinJobAge {min_job_age} s)")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, default=ROOT / "workflow" / "profiles" / "slurm",
                        help="profile directory (default: workflow/profiles/slurm)")
    parser.add_argument("--partition", help="partition to check instead of the profile's slurm_partition")
    parser.add_argument("--status-command", choices=["sacct", "squeue"],
                        help="the --slurm-status-command you will pass on the command line")
    args = parser.parse_args(argv)
    try:
        notes = check(args.profile, args.partition, args.status_command)
    except CheckError as err:
        print(f"check_slurm: error: {err}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"check_slurm: {note}")
    print("check_slurm: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
