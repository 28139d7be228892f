"""A model.pt state_dict read as numpy arrays, without torch: what the figure and table jobs need.

Figure and table jobs run without torch (their plot environment has none); the weight histograms
and the TV-distance table only need the trained weights' values. ``torch.save`` writes a zip
archive: ``<name>/data.pkl`` pickles an OrderedDict of tensors, each rebuilt by
``torch._utils._rebuild_tensor_v2`` from a storage that the pickle names by a persistent id and
whose raw bytes are ``<name>/data/<key>``. The unpickler here resolves exactly those globals and
refuses every other one, like ``torch.load(weights_only=True)``: nothing in the file is executed.
Training and every other stage load checkpoints with torch (:mod:`prunelimit.checkpoint`);
tests/test_no_torch.py checks that both read the same arrays.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from .errors import PrunelimitError

# torch's storage classes as the pickle names them (torch.<name>) → element type
STORAGE_DTYPES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2", "LongStorage": "i8",
                  "IntStorage": "i4", "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1",
                  "BoolStorage": "?"}


class _StorageType(str):
    """A ``torch.<X>Storage`` global of the pickle: only its name is needed."""


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    flat = storage[offset:]
    needed = 1 + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else 0
    if flat.size < needed:
        raise pickle.UnpicklingError(f"tensor of shape {tuple(size)} overruns its storage")
    view = np.lib.stride_tricks.as_strided(flat, shape=tuple(size), strides=[s * flat.itemsize for s in stride])
    return view.copy()


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self.archive, self.prefix, self.byteorder = archive, prefix, byteorder

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(f"it holds a pickled call to {module}.{name}, which is not a state_dict's")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType)):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid
        dtype = np.dtype(STORAGE_DTYPES[storage_type]).newbyteorder("<" if self.byteorder == "little" else ">")
        data = np.frombuffer(self.archive.read(f"{self.prefix}data/{key}"), dtype=dtype)
        if data.size != numel:
            raise pickle.UnpicklingError(f"storage {key} holds {data.size} elements, the pickle says {numel}")
        return data


def read_state_dict_arrays(path: str | os.PathLike, what: str = "checkpoint") -> dict[str, np.ndarray]:
    """name → array of a ``torch.save(model.state_dict())`` file, in the file's order, or a one-line error."""
    path = Path(path)
    if not path.exists():
        raise PrunelimitError(f"missing {what}: {path}")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl")]
            if len(pickles) != 1:
                raise PrunelimitError(f"cannot read {what} {path}: not a torch.save archive (no single data.pkl)")
            prefix = pickles[0].removesuffix("data.pkl")
            names = set(archive.namelist())
            byteorder = archive.read(f"{prefix}byteorder").decode().strip() if f"{prefix}byteorder" in names \
                else "little"
            with archive.open(pickles[0]) as fh:
                state = _Unpickler(fh, archive, prefix, byteorder).load()
    except PrunelimitError:
        raise
    except pickle.UnpicklingError as err:  # this module's refusals say what was wrong in one line
        raise PrunelimitError(f"cannot read {what} {path}: {err}") from None
    except zipfile.BadZipFile:
        raise PrunelimitError(f"cannot read {what} {path}: not a zip archive (torch.save's format)") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad checkpoint
        raise PrunelimitError(f"cannot read {what} {path}: {type(err).__name__}: {err}") from None
    if not isinstance(state, dict) or not all(isinstance(v, np.ndarray) for v in state.values()):
        raise PrunelimitError(f"{what} {path} is not a state_dict")
    return dict(state)


def prunable_weights(path: str | os.PathLike, expected: int | None = None) -> np.ndarray:
    """The prunable weights of a registry model's state_dict file, flat, as stored (float32), the library's order.

    Prunable = conv and linear weights (models.prunable_parameters); in a registry model's
    state_dict these are exactly the ``*.weight`` entries with two or more dimensions (BatchNorm
    weights are 1-D), in module order (tests/test_no_torch.py checks this for every registry
    model). ``expected``: the count the run's metrics.json records (``n_prunable``), checked.
    """
    state = read_state_dict_arrays(path)
    parts = [v.ravel() for k, v in state.items() if k.rpartition(".")[2] == "weight" and v.ndim >= 2]
    flat = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if expected is not None and flat.size != int(expected):
        raise PrunelimitError(f"checkpoint {path} holds {flat.size} prunable weights, its metrics say {expected}")
    return flat
