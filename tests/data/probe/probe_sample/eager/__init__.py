"""A package that imports its deprecated submodule eagerly, so the submodule's warning names this file."""

from probe_sample.eager import legacy  # noqa: F401
