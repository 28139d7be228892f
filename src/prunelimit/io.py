"""Atomic file output and checkpoint loading with clear errors.

Every output is written to a temporary name beside its destination and renamed only once it is
complete, so a killed job never leaves a half-written file that looks finished.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import PrunelimitError  # re-exported: the library raises it as prunelimit.io.PrunelimitError


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
    if isinstance(obj, torch.Tensor):
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


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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


def torch_load_error(err: BaseException) -> str:
    """One line saying why ``torch.load(..., weights_only=True)`` refused or failed on a file."""
    text = str(err)  # torch's own message is a page long and suggests weights_only=False, which is the hole
    refused = re.search(r"GLOBAL ([\w.]+)", text)
    if refused:
        return f"it holds a pickled call to {refused[1]}, which weights-only loading refuses"
    refused = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if refused:
        return f"weights-only loading refuses it ({refused[1].strip()})"
    if isinstance(err, EOFError) or "Ran out of input" in text:
        return "the file is empty or truncated"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def read_state_dict(path: str | os.PathLike, what: str = "checkpoint") -> dict:
    """A state_dict loaded with ``weights_only=True`` (nothing in the file is executed), or a one-line error."""
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing {what}: {path}")
    if path.stat().st_size == 0:
        raise PrunelimitError(f"cannot read {what} {path}: the file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise PrunelimitError(f"cannot read {what} {path}: {torch_load_error(err)}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        got = type(state).__name__ if not isinstance(state, dict) else "a dict that is not all tensors"
        raise PrunelimitError(f"{what} {path} is not a state_dict (got {got})")
    return state


def load_state_dict(model: nn.Module, path: str | os.PathLike, state: dict | None = None) -> nn.Module:
    """Load a state_dict checkpoint (``weights_only=True``) into ``model`` or say what is wrong.

    ``state``: the file's content when the caller has already read it with :func:`read_state_dict`.
    """
    path = Path(path)
    state = read_state_dict(path) if state is None else state
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:3]}{'…' if len(missing) > 3 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:3]}{'…' if len(unexpected) > 3 else ''}")
        if wrong:
            k = wrong[0]
            parts.append(f"shape mismatch at {k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}")
        raise PrunelimitError(f"checkpoint {path} does not fit the model: " + "; ".join(parts))
    model.load_state_dict(state)
    return model
