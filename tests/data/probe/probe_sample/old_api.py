"""The old import path: still works, warns on import."""

import warnings

warnings.warn("probe_sample.old_api is deprecated; import probe_sample.good instead", DeprecationWarning, stacklevel=2)

from probe_sample.good import Settings, handler  # noqa: E402

__all__ = ["Settings", "handler"]
