"""Running the Snakemake pipeline from tests, in a scratch directory so results/ stays clean."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


# A sitecustomize that makes `import torch` fail loudly (tests/no_torch/sitecustomize.py).
NO_TORCH = ROOT / "tests" / "no_torch"
TORCH_REFUSED = "no_torch: refused import of"


def snakemake_command(workdir: Path, *args: str, configfile: Path | None = None,
                      refuse_torch: bool = False) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run this repository's workflow in ``workdir``; with
    ``refuse_torch`` the snakemake process cannot import torch (for dry runs: jobs would need it)."""
    cmd = [SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "--directory", str(workdir),
           "--configfile", str(configfile or ROOT / "config.yaml"), *args]
    pythonpath = [str(NO_TORCH)] if refuse_torch else []
    return cmd, {**os.environ, "PYTHONPATH": os.pathsep.join([*pythonpath, str(ROOT / "src")])}


def snakemake(workdir: Path, *args: str, configfile: Path | None = None, timeout: float = 1500,
              check: bool = True, refuse_torch: bool = False) -> subprocess.CompletedProcess:
    cmd, env = snakemake_command(workdir, *args, configfile=configfile, refuse_torch=refuse_torch)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
    return proc


def load_config(name: str = "config.yaml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def rule_blocks() -> list[tuple[str, str]]:
    """(name, text) of every rule in workflow/rules/*.smk, parsed from the source: a rule's text runs
    to the next rule. Rules made in a loop (`rule:` with `name:`) keep their name's expression; a
    rule made by `use rule BASE as NAME with:` gets its overrides followed by BASE's text (what it
    inherits)."""
    blocks, derived = [], []
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        text = smk.read_text()
        starts = [m.start() for m in re.finditer(r"(?m)^\s*(?:rule\b[ \w]*|use rule \w+ as \w+ with):", text)]
        for start, end in zip(starts, starts[1:] + [len(text)]):
            block = text[start:end]
            use = re.match(r"\s*use rule (\w+) as (\w+)", block)
            if use:
                derived.append((use[2], use[1], block))
                continue
            named = re.match(r"\s*rule (\w+):", block) or re.search(r"name:\s*\n\s*(.+)", block)
            blocks.append((named[1].strip(), block))
    base_text = dict(blocks)
    blocks += [(name, block + base_text[base]) for name, base, block in derived]
    return blocks
