"""Atomic file output and JSON/npz/CSV loading with clear errors; torch-free.

Every output is written to a temporary name beside its destination and renamed only once it is
complete, so a killed job never leaves a half-written file that looks finished.

No torch here: figure and table jobs import this module and run without torch (their plot
environment has none). Checkpoints (torch.save/torch.load) live in :mod:`prunelimit.checkpoint`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import PrunelimitError  # re-exported: the library raises it as prunelimit.io.PrunelimitError

if TYPE_CHECKING:  # pandas is imported where used: a compute job that never reads a CSV skips its ~0.2 s
    import pandas as pd


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the destination's folder; rename it to ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Delete the temporaries a killed writer of ``path`` left (``.<name>.<random>.tmp``).

    Each output has one writer at a time (one Snakemake job, one training run), so any such file
    is the leftover of an earlier, killed write of the same target.
    """
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]+\.tmp")  # mkstemp's random part has no dots
    removed = []
    if path.parent.is_dir():
        for leftover in path.parent.iterdir():
            if pattern.fullmatch(leftover.name) and leftover.is_file():
                leftover.unlink(missing_ok=True)
                removed.append(leftover)
    return removed


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    torch = sys.modules.get("torch")  # a tensor exists only once torch is loaded: never import it here
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=False) + "\n")


def load_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing file: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PrunelimitError(f"{path} is not valid JSON: {err}") from None


def load_csv(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing file: {path}")
    import pandas as pd

    return pd.read_csv(path)


def save_npz(path: str | os.PathLike, **arrays: Any) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:  # a file object stops numpy from appending ".npz"
            np.savez(fh, **arrays)


def load_npz(path: str | os.PathLike, what: str = "array", required: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Every array of an .npz file, loaded eagerly (no pickles); ``what`` names the file in errors."""
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing {what} file: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError) as err:
        raise PrunelimitError(f"cannot read {what} file {path}: {err}") from None
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise PrunelimitError(f"{what} file {path} lacks arrays {missing}")
    return arrays
