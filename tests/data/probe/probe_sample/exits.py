"""Kills the interpreter at import time, before anything can be reported."""

import os
import sys

sys.stderr.write("fatal: cannot continue\n")
sys.stderr.flush()
os._exit(7)
