"""The one user-facing error type, in a module with no heavy imports (the workflow's parse uses it)."""


class PrunelimitError(RuntimeError):
    """A user-facing error: bad input named in one sentence, no traceback needed."""
