"""Changes behaviour in the next major version: warns FutureWarning from its own file."""

import warnings

warnings.warn("probe_sample.future_api changes its defaults in 2.0", FutureWarning, stacklevel=1)

LIMIT = 100
