"""The base of every typed config section (prunelimit.settings, the method settings of prunelimit.methods).

Torch-free and dependency-free, so the registry and the settings can both build on it.
"""

from __future__ import annotations

from dataclasses import fields


class Section:
    """A frozen dataclass built from one config section (unknown keys are a schema error upstream)."""

    @classmethod
    def from_section(cls, section: dict):
        names = {f.name for f in fields(cls)}
        missing = sorted(names - set(section))
        if missing:
            raise ValueError(f"{cls.__name__}: section lacks {missing}; validate the config first (the schema "
                             f"supplies every default)")
        # lists become tuples (hashable, immutable); numbers keep their YAML type, so what a job writes is unchanged
        return cls(**{k: tuple(section[k]) if isinstance(section[k], list) else section[k] for k in names})
