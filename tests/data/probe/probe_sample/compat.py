"""A renamed symbol kept behind a module ``__getattr__`` that warns (PEP 562)."""

import warnings
from typing import Any

from probe_sample.good import Settings


def __getattr__(name: str) -> Any:
    if name == "OldSettings":
        warnings.warn("OldSettings is deprecated; use probe_sample.good.Settings", DeprecationWarning, stacklevel=2)
        return Settings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
