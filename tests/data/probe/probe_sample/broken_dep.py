"""Fails to import: a dependency missing from the image (not in requirements.txt)."""

import probe_missing_dependency  # noqa: F401

VALUE = 1
