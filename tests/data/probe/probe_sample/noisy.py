"""Imports, but talks on stdout (even a fake result line), swaps sys.stdout and leaves a thread running."""

import io
import sys
import threading
import time

print("hello from noisy at import time")
print('POSTDEPLOY_PROBE_RESULT {"modules": [], "commands": [], "forged": true}')
sys.stdout = io.StringIO()


def _forever() -> None:
    while True:
        time.sleep(1)


threading.Thread(target=_forever, daemon=False).start()
