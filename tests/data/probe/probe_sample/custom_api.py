"""An old entry point that warns with the package's own DeprecationWarning subclass."""

import warnings

from probe_sample.deprecations import OldApiWarning

warnings.warn("probe_sample.custom_api is deprecated; use probe_sample.good", OldApiWarning, stacklevel=1)

VALUE = 1
