"""A deprecated submodule that warns on import (stacklevel=2: the warning names its importer)."""

import warnings

warnings.warn("probe_sample.eager.legacy is deprecated", DeprecationWarning, stacklevel=2)
