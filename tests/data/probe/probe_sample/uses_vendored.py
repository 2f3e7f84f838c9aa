"""A module that is not deprecated itself but imports a dependency that warns."""

from probe_sample import vendored  # noqa: F401
