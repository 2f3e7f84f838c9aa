"""Says "deprecated" in a plain UserWarning: no deprecation warning class, so it does not count."""

import warnings

warnings.warn("probe_sample.user_warned is deprecated", UserWarning, stacklevel=1)

VALUE = 1
