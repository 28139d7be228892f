"""Entry points named as "module:function" strings, imported only when called.

The registries name code this way so that reading them imports nothing heavy (torch, matplotlib): the
pruning methods (prunelimit.methods), the dataset builders (prunelimit.datasets), the figure rules'
``draw_<name>`` functions and the table rules' ``<name>_from_files`` (workflow/rules/report.smk's FIGURES and
TABLES, run by scripts/figure.py and scripts/table.py). Torch-free:
it imports only the module the entry names, when called.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from .errors import PrunelimitError


def resolve(entry: str) -> Callable:
    """The callable ``entry`` ("package.module:function") names, its module imported now."""
    module, sep, name = entry.partition(":")
    if not sep or not module or not name:
        raise PrunelimitError(f"entry point {entry!r}: expected 'module:function'")
    target = getattr(importlib.import_module(module), name, None)
    if not callable(target):
        raise PrunelimitError(f"entry point {entry!r}: module {module} has no function {name}")
    return target
