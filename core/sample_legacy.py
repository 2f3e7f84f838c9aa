"""The sample service's old import path: still works, and warns (the demo's imports check expects it to)."""

from __future__ import annotations

import warnings

from core.sample_service import SampleService

warnings.warn("core.sample_legacy is deprecated; import core.sample_service instead", DeprecationWarning, stacklevel=2)

__all__ = ["SampleService"]
