"""core.logs: the function's own log lines, when the first ones of a fresh instance come from many threads at once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
THREADS = 60
# In a fresh interpreter: THREADS request threads released together, each with an undecodable message whose ack is
# the instance's first log line. HOOK runs first, before anything of ours is imported.
FIRST_LINES = """
import collections, json, sys, threading
{hook}
from entry.function import handle

barrier = threading.Barrier({threads})
kinds, errors = [], []

def deliver(i):
    barrier.wait()
    try:
        kinds.append(handle({{"message": {{"data": "bm90IGpzb24=", "messageId": f"m-{{i}}"}}}}, f"e-{{i}}").kind)
    except BaseException as exc:
        errors.append(f"{{type(exc).__name__}}: {{exc}}")

threads = [threading.Thread(target=deliver, args=(i,)) for i in range({threads})]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({{"kinds": collections.Counter(kinds), "errors": errors, "installed": installed()}}), file=sys.stderr)
"""
NO_HOOK = "def installed():\n    return None\n"
# Slows the handler's construction so that, without a lock, every thread that saw "not configured" builds its own.
SLOW_HANDLER = """
import time
from google.cloud.logging_v2 import handlers
built = []
original = handlers.StructuredLogHandler.__init__
def slow(self, *args, **kwargs):
    built.append(1)
    time.sleep(0.05)
    original(self, *args, **kwargs)
handlers.StructuredLogHandler.__init__ = slow
def installed():
    return len(built)
"""


# The handler's module fails to import, as a half-initialised google.cloud.logging_v2 does under a thread race.
BROKEN_HANDLER = """
import sys
sys.modules["google.cloud.logging_v2.handlers"] = None  # the next import of it raises ImportError
def installed():
    return None
"""


def first_lines(hook: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(what the threads saw, the JSON lines on stdout but google-cloud-logging's own diagnostic one) of one fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", FIRST_LINES.format(hook=hook, threads=THREADS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stderr.strip().splitlines()[-1])
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    return outcome, [line for line in lines if "logging.googleapis.com/diagnostic" not in line]


def test_sixty_first_log_lines_at_once_on_a_fresh_interpreter_are_all_written() -> None:
    outcome, lines = first_lines(NO_HOOK)
    assert outcome["errors"] == []
    assert outcome["kinds"] == {"bad": THREADS}  # every undecodable message acked as bad, none turned into an error
    assert len(lines) == THREADS
    assert {line["severity"] for line in lines} == {"WARNING"}
    assert sorted(line["message_id"] for line in lines) == sorted(f"m-{i}" for i in range(THREADS))


def test_the_structured_handler_is_installed_once_however_many_threads_log_first() -> None:
    outcome, lines = first_lines(SLOW_HANDLER)
    assert outcome["installed"] == 1
    assert outcome["errors"] == [] and outcome["kinds"] == {"bad": THREADS}
    assert len(lines) == THREADS  # one handler: each line once


def test_when_the_structured_handler_cannot_be_imported_every_message_is_still_acked_and_logged() -> None:
    outcome, lines = first_lines(BROKEN_HANDLER)
    assert outcome["errors"] == [] and outcome["kinds"] == {"bad": THREADS}  # handle() never raised
    notes = [line for line in lines if line["message"].startswith("structured logging unavailable")]
    assert len(notes) == 1 and "import of google.cloud.logging_v2.handlers halted" in notes[0]["message"]
    acked = [line for line in lines if line not in notes]
    assert len(acked) == THREADS and {line["severity"] for line in acked} == {"WARNING"}
    assert sorted(line["message_id"] for line in acked) == sorted(f"m-{i}" for i in range(THREADS))
    assert all(line["message"].startswith("acked undecodable message") for line in acked)
