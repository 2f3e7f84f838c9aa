"""Fails at import time: configuration read at module level."""

import os

DATABASE_URL = os.environ.get("PROBE_SAMPLE_DATABASE_URL")
if not DATABASE_URL:
    raise RuntimeError("PROBE_SAMPLE_DATABASE_URL is not set")
