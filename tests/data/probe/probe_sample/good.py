"""Imports cleanly: the current home of the application's API."""


class Settings:
    """Nested attributes resolve with ``probe_sample.good:Settings.DEFAULT``."""

    DEFAULT = ("us-central1", "europe-west1")


def handler() -> str:
    return "ok"
