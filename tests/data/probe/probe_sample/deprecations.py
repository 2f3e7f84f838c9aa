"""The package's own warning class, the way libraries define one (``class RemovedInV2Warning(DeprecationWarning)``)."""


class OldApiWarning(DeprecationWarning):
    """Raised by the package's old entry points."""
