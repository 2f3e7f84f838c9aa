"""The test suite. Before anything imports google.auth (it reads these once, at import), even under plain `pytest`:
no test may reach the GCE metadata server."""

import os

os.environ.update(NO_GCE_CHECK="true", GCE_METADATA_HOST="127.0.0.1:9", GCE_METADATA_IP="127.0.0.1:9")
