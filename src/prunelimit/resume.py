"""Resume checkpoints of training: what they are keyed on, and reading one without trusting it.

A resume file continues a killed run only if it was written for the same result: the same model
(registry name, ``model_args``, input shape, classes), the same data (content hash of the arrays)
and the same training config. Anything else — or a file that is not a weights-only checkpoint of
this format — is reported in one line and training starts afresh, so a changed split can never
continue the old weights.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import torch_load_error

FIELDS = ("model", "optimizer", "rng", "epoch", "steps", "elapsed", "history", "extra", "key")


def plain(obj: Any) -> Any:
    """``obj`` as JSON-like builtins (numpy scalars and tensors unwrapped, tuples as lists): what
    ``torch.load(weights_only=True)`` reads back and ``==`` compares across a save."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, (np.generic, torch.Tensor)):
        return plain(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def tensor_hash(data) -> str:
    """sha256 of a dataset's tensors, for data that did not come from a file (no ``content_hash``)."""
    digest = hashlib.sha256()
    for t in (data.x_train, data.y_train, data.x_test, data.y_test):
        a = t.detach().cpu().contiguous().numpy()
        digest.update(f"{a.dtype.str}:{a.shape};".encode())
        digest.update(memoryview(a).cast("B"))
    return digest.hexdigest()


def resume_key(model: nn.Module, data, train_config: dict) -> dict:
    """Everything a training result depends on: model spec, data content, training config."""
    spec = getattr(model, "build_spec", None)
    if spec is None:  # not built by the registry: its class and parameter shapes stand for its spec
        spec = {"class": f"{type(model).__module__}.{type(model).__qualname__}",
                "parameters": [[k, list(v.shape)] for k, v in model.state_dict().items()]}
    spec = {"in_shape": list(data.in_shape), "num_classes": int(data.num_classes), **spec}
    return plain({"model": spec, "data": getattr(data, "content_hash", None) or tensor_hash(data),
                  "train": train_config})


def _changes(old: dict, new: dict) -> str:
    keys = sorted(set(old) | set(new))
    return ", ".join(f"{k} {json.dumps(old.get(k))} -> {json.dumps(new.get(k))}" for k in keys
                     if old.get(k) != new.get(k))


def why_not_resumable(old: dict, new: dict) -> str:
    """'' if a checkpoint keyed ``old`` may continue a run keyed ``new``, else what changed, in words."""
    reasons = []
    if old.get("model") != new["model"]:
        reasons.append(f"the model changed ({_changes(old.get('model') or {}, new['model'])})")
    if old.get("data") != new["data"]:
        reasons.append(f"the data changed (content sha256 {str(old.get('data'))[:12]}… -> {new['data'][:12]}…)")
    if old.get("train") != new["train"]:
        reasons.append(f"the training config changed ({_changes(old.get('train') or {}, new['train'])})")
    return "; ".join(reasons)


def read_resume(path: str | os.PathLike, key: dict, map_location, extra: Iterable[str] = ()) -> tuple[dict | None, str]:
    """``(state, '')`` if ``path`` is a resume checkpoint for ``key`` holding the state of every
    name in ``extra`` (what the run accumulates besides model and optimiser, e.g. the data-gradient
    masks); ``(None, why not)`` otherwise.

    Loaded with ``weights_only=True``: a planted file cannot run code, it is only reported.
    """
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - unreadable for any reason: not resumable, say why
        return None, torch_load_error(err)
    if not isinstance(state, dict):
        return None, "it is not a resume checkpoint of this version (not a dict)"
    missing = [f for f in FIELDS if f not in state] or [f for f in ("key", "extra") if not isinstance(state[f], dict)]
    if missing:
        return None, f"it is not a resume checkpoint of this version (no valid {', '.join(missing)})"
    reason = why_not_resumable(state["key"], key)
    if reason:
        return None, reason
    absent = sorted(set(extra) - set(state["extra"]))
    if absent:
        return None, f"it holds no state for {', '.join(absent)} (written by a run that did not track it)"
    return state, ""
