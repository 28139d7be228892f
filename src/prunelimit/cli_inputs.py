"""The inputs of ``prunelimit predict``: the user's model (registry name or MODULE:CALLABLE and
``--model-args``), the data (registry dataset or a .npz/.pt file, checked as the pipeline checks its
datasets), and a pipeline config (``--config``), each failure a one-line :class:`PrunelimitError`
naming the option."""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .architectures import ARCHITECTURES
from .checkpoint import torch_load_error
from .data import DATASETS, TensorData, check_arrays, load_tensors, prepare_dataset
from .io import PrunelimitError
from .models import build_model, prunable_parameters

DATA_FORMAT = """\
data files: a .npz (numpy) or .pt (torch.save of a dict) holding
  x_train  inputs, shape (N, ...) matching the model's input (float, or uint8 images scaled to [0,1])
  y_train  integer class labels, shape (N,)
  x_test, y_test  optional; needed only by --verify
Inputs are used as given (no normalisation), except uint8 arrays, which are divided by 255.
A registry dataset name (digits, mnist1d, cifar10, ...) is prepared into --data-dir first."""


def _import_callable(spec: str):
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise PrunelimitError(f"--model {spec!r}: use a registry name or MODULE:CALLABLE (or path/to/file.py:CALLABLE)")
    try:
        if module_name.endswith(".py"):
            path = Path(module_name)
            if not path.exists():
                raise PrunelimitError(f"--model: no such file {module_name}")
            module_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            module = importlib.import_module(module_name)
    except PrunelimitError:
        raise
    except Exception as err:  # noqa: BLE001 - any import failure is the user's module
        raise PrunelimitError(f"--model: cannot import module {module_name!r}: {type(err).__name__}: {err}") from None
    if not hasattr(module, attr):
        raise PrunelimitError(f"--model: module {module_name!r} has no attribute {attr!r}")
    return getattr(module, attr)


def parse_model_args(text: str | None) -> dict:
    """``--model-args`` as a dict of keyword arguments, or a one-line error naming the option."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise PrunelimitError(f"--model-args is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise PrunelimitError(f"--model-args must be a JSON object of keyword arguments such as "
                              f"'{{\"width\": 0.5}}', got a JSON {type(value).__name__}")
    return value


def registry_classes(spec: str, state: dict, in_shape: tuple[int, ...], needed: int, model_args: dict) -> int:
    """Classes of registry model ``spec`` as its checkpoint's classifier has them (labels may use fewer).

    A label beyond the classifier is the data's fault, and is named as such.
    """

    with torch.device("meta"):  # layer names only: no memory, no initialisation
        probe = _registry_model(spec, in_shape, needed, model_args)
    name, _ = prunable_parameters(probe)[-1]  # the classifier is the last conv/linear layer
    if name not in state or state[name].dim() < 1:
        return needed  # does not fit anyway: load_state_dict names the mismatch
    outputs = int(state[name].shape[0])
    if outputs < needed:
        raise PrunelimitError(f"--data: labels go up to {needed - 1}, but the checkpoint's classifier {name} has "
                              f"{outputs} outputs (classes 0..{outputs - 1})")
    return outputs


def _registry_model(spec: str, in_shape: tuple[int, ...], num_classes: int, model_args: dict) -> nn.Module:

    try:
        return build_model(spec, in_shape, num_classes, **model_args)
    except (PrunelimitError, TypeError, ValueError) as err:  # unknown key, or e.g. {"width": "wide"}
        raise PrunelimitError(f"--model-args: {err}") from None


def build_user_model(spec: str, in_shape: tuple[int, ...], num_classes: int, model_args: dict) -> nn.Module:
    """A registry model by name, or any importable callable returning an nn.Module."""

    if ":" not in spec:
        if spec not in ARCHITECTURES:
            known = ", ".join(sorted(ARCHITECTURES))
            raise PrunelimitError(f"--model: unknown model {spec!r}; registry models: {known}, "
                                  "or give MODULE:CALLABLE")
        return _registry_model(spec, in_shape, num_classes, model_args)
    factory = _import_callable(spec)
    try:
        model = factory(**model_args)
    except Exception as err:  # noqa: BLE001
        raise PrunelimitError(f"--model: calling {spec} failed: {type(err).__name__}: {err}") from None
    if not isinstance(model, nn.Module):
        raise PrunelimitError(f"--model: {spec} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def load_data(source: str, data_dir: str, device: torch.device):
    """A registry dataset (prepared on first use) or a .npz/.pt file in the documented format."""

    if source in DATASETS:
        path = Path(data_dir) / f"{source}.npz"
        if not path.exists():
            prepare_dataset(source, path)
        return load_tensors(path, device)
    path = Path(source)
    if not path.exists():
        raise PrunelimitError(f"--data: {source!r} is neither a registry dataset ({', '.join(DATASETS)}) nor a file")
    try:
        if path.suffix == ".npz":
            with np.load(path) as npz:
                arrays = {k: torch.from_numpy(npz[k]) for k in npz.files}
        elif path.suffix == ".pt":
            arrays = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise PrunelimitError(f"--data: {source} must be a .npz or .pt file")
    except PrunelimitError:
        raise
    except Exception as err:  # noqa: BLE001
        raise PrunelimitError(f"--data: cannot read {source}: {torch_load_error(err)}") from None
    if not isinstance(arrays, dict) or not {"x_train", "y_train"} <= set(arrays):
        raise PrunelimitError(f"--data: {source} must hold x_train and y_train (and optionally x_test, y_test)")

    def tensor(name):
        try:
            return torch.as_tensor(arrays[name])
        except Exception as err:  # noqa: BLE001 - e.g. a list of strings in a .pt file
            raise PrunelimitError(f"--data: {name} in {source} is not a numeric array ({err})") from None

    def inputs(name):  # any real dtype and rank ≥ 2 (wider than a prepared dataset's), as float like the pipeline's
        x = tensor(name)
        if x.dtype == torch.bool or x.is_complex() or x.dim() < 2:
            raise PrunelimitError(f"--data: {name} must be real-valued inputs of shape (N, ...), got {x.dtype} "
                                  f"{tuple(x.shape)}")
        return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()

    if ("x_test" in arrays) != ("y_test" in arrays):
        raise PrunelimitError(f"--data: {source} holds only one of x_test and y_test; give both or neither")
    x_train, y_train = inputs("x_train"), tensor("y_train")
    x_test, y_test = (inputs("x_test"), tensor("y_test")) if "x_test" in arrays else (x_train[:0], y_train[:0])
    labels = [y.numpy() for y in (y_train, y_test)]
    num_classes = max([int(y.max()) + 1 for y in labels if y.size and np.issubdtype(y.dtype, np.integer)] + [1])
    # the dataset checks of the pipeline (prunelimit.data.check_arrays): finite inputs, test samples shaped as
    # train's, one integer label in [0, num_classes) per sample; without a test split, train stands in for it
    x_check, y_check = (x_test, labels[1]) if "x_test" in arrays else (x_train, labels[0])
    check_arrays({"x_train": _nchw(x_train), "y_train": labels[0], "x_test": _nchw(x_check), "y_test": y_check,
                  "num_classes": np.int64(num_classes)}, "--data")
    return TensorData(x_train, y_train.long(), x_test, y_test.long(), num_classes).to(device)


def _nchw(x: torch.Tensor) -> np.ndarray:
    """Inputs (N, ...) as the (N, C, H, W) array check_arrays takes: missing axes 1, axes beyond W folded into W."""
    a = x.detach().numpy()
    return a.reshape(*a.shape[:3], math.prod(a.shape[3:])) if a.ndim > 4 else a.reshape(*a.shape, *(1,) * (4 - a.ndim))


def read_config(path: str | Path) -> dict:
    """A pipeline config, validated (the schema's defaults filled in) as the workflow reads it."""
    import yaml

    from .config import validate_config

    if not Path(path).exists():
        raise PrunelimitError(f"--config: no such file {path}")
    config = yaml.safe_load(Path(path).read_text())
    validate_config(config)
    return config


def check_model_fits_data(model: nn.Module, data) -> None:
    try:
        with torch.no_grad():
            out = model.eval()(data.x_train[:2])
    except Exception as err:  # noqa: BLE001
        raise PrunelimitError(f"--data: inputs of shape {tuple(data.x_train.shape[1:])} do not fit the model: "
                              f"{type(err).__name__}: {str(err).splitlines()[0]}") from None
    if out.dim() != 2 or out.shape[1] < data.num_classes:
        raise PrunelimitError(f"--data: the model outputs shape {tuple(out.shape)} but the labels need "
                              f"{data.num_classes} classes")
