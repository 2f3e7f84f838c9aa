"""Slated for removal: warns PendingDeprecationWarning on import (stacklevel=2: the warning names its importer)."""

import warnings

warnings.warn("probe_sample.pending_api will be deprecated; import probe_sample.good", PendingDeprecationWarning, stacklevel=2)

from probe_sample.good import Settings  # noqa: E402

__all__ = ["Settings"]
