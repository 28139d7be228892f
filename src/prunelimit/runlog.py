"""Running library code as a pipeline rule: log to the rule's log file, one-line errors."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Iterator

from .io import PrunelimitError

USER_ERRORS = (PrunelimitError, FloatingPointError, FileNotFoundError)


@contextlib.contextmanager
def rule_context(log_path: str | os.PathLike | None, threads: int | None = None) -> Iterator[logging.Logger]:
    """Send stdout/stderr (progress bars included) to ``log_path``; turn user errors into one line.

    A :class:`PrunelimitError`, NaN loss or missing file ends the job with exit code 1 and a single
    ``error: …`` line in the log and on the console, instead of a traceback. Any other exception
    is a bug or an unforeseen input: its traceback is written to the log, then it propagates.
    """
    # Never imports torch: figure and table jobs run without it. A compute script that passes
    # ``threads`` has loaded torch through its prunelimit modules; without torch there is no torch
    # work to limit, and the provenance line says torch was not loaded.
    torch = sys.modules.get("torch")
    if threads and torch is not None:
        torch.set_num_threads(int(threads))
    console = sys.__stderr__
    log_file = open(log_path, "w", buffering=1) if log_path else None  # noqa: SIM115
    old_out, old_err = sys.stdout, sys.stderr
    if log_file:
        sys.stdout = sys.stderr = log_file
    logger = logging.getLogger("prunelimit")
    old_handlers = logger.handlers[:]
    logger.handlers[:] = [logging.StreamHandler(sys.stderr)]
    logger.setLevel(logging.INFO)
    # provenance: which interpreter (e.g. a --sdm conda environment) and which library ran the rule
    logger.info("python %s, torch %s, prunelimit %s", sys.executable,
                torch.__version__ if torch else "not loaded", os.path.dirname(os.path.abspath(__file__)))
    try:
        yield logger
    except USER_ERRORS as err:
        message = f"error: {err}"
        print(message, file=sys.stderr)
        if log_file and console:
            print(message, file=console)
        raise SystemExit(1) from None
    except (Exception, KeyboardInterrupt):
        # once stderr is restored below, Python prints the traceback on the console only: the log
        # must end with it too, or the log of a failed rule shows no reason
        if log_file:
            traceback.print_exc(file=log_file)
        raise
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        logger.handlers[:] = old_handlers  # the log file closes below; later records must not go to it
        if log_file:
            log_file.close()
