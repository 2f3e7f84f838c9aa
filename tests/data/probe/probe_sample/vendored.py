"""Stands for a third-party dependency that warns about its own internals when imported."""

import warnings

warnings.warn("vendored.legacy_codec is deprecated", DeprecationWarning, stacklevel=1)
