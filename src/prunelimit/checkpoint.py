"""Checkpoints: torch.save atomically, weights-only torch.load of state_dicts with one-line errors.

Apart from :mod:`prunelimit.io` because these need torch, and figure and table jobs import io
without torch.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import PrunelimitError
from .io import atomic_path


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


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
