"""The sample service's old import path: still works, and warns (the demo's imports check expects it to)."""

from __future__ import annotations

import warnings

from demo.sample_service import SampleService

warnings.warn("demo.sample_legacy is deprecated; import demo.sample_service instead", DeprecationWarning, stacklevel=2)

__all__ = ["SampleService"]
