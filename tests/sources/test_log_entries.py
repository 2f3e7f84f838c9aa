"""sources.log_entries: stitching tracebacks in entries already read, and local log files (JSON lines and plain text)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from checks.logs import signature_of
from core.signals import LogBatch, LogEntry, RevisionScope
from sources.log_entries import FileLogSource, parse_log_text, stitch
from tests.servers.data import DATA, INSTANCE_A, INSTANCE_B, NEW, RECORDED, SPLIT_KEY, SPLIT_LINES, split_entries

LOGS = DATA / "logs"
SCOPE = RevisionScope("orders", NEW, "acme-prod", "us-central1")
SINCE = datetime(2026, 11, 25, 10, 3, 30, 123456, tzinfo=UTC)
UNTIL = datetime(2026, 11, 25, 10, 8, 30, tzinfo=UTC)
KEY_LINES = RECORDED["python_traceback"]["textPayload"].splitlines()


def ask(source: Any, **kwargs: Any) -> LogBatch:
    kwargs.setdefault("text_search", ("Traceback",))
    batch: LogBatch = asyncio.run(source.entries(SCOPE, SINCE, UNTIL, **kwargs))
    return batch


def test_stitch_passes_other_entries_through_in_order() -> None:
    at = datetime(2026, 11, 25, 10, 4, 1, tzinfo=UTC)

    def line(text: str, ms: int, instance: str = "a", log: str = "stdout", **fields: Any) -> LogEntry:
        return LogEntry(at + timedelta(milliseconds=ms), text=text, instance=instance, log_name=log, **fields)

    entries = [
        line("listening", 0), line("Traceback (most recent call last):", 1),
        line("GET /x 200", 2, log="requests", http_status=200),
        line("Traceback (most recent call last):", 3, "b"), line('  File "/app/x.py", line 3, in f', 4),
        line("handled", 5, "c", payload={"message": "handled"}), line("ValueError: boom", 6, severity="ERROR"),
        line('  File "/app/y.py", line 9, in g', 7, "b"), line("done", 8), line("KeyError: 'k'", 9, "b"),
    ]
    out = stitch(entries)
    assert [e.text for e in out] == [
        "listening", 'Traceback (most recent call last):\n  File "/app/x.py", line 3, in f\nValueError: boom',
        "GET /x 200", "Traceback (most recent call last):\n  File \"/app/y.py\", line 9, in g\nKeyError: 'k'", "handled",
        "done"]
    assert out[1].severity == "ERROR" and out[1].timestamp == entries[1].timestamp and out[3].instance == "b"
    assert stitch(out) == out and out[0] is entries[0] and out[2] is entries[2]


def test_an_unrelated_line_among_the_frames_stays_apart_and_the_block_goes_on() -> None:
    at = datetime(2026, 11, 25, 10, 4, 1, tzinfo=UTC)
    texts = ["Traceback (most recent call last):", '  File "/app/main.py", line 8, in handler', "db timeout after 5 s",
             "KeyError: 'sku'"]
    severities = ["ERROR", "ERROR", "ERROR", "ERROR"]  # stderr lines of one instance, another request's line among them
    entries = [LogEntry(at + timedelta(milliseconds=i), severity=sev, text=t, instance="a", log_name="stderr")
               for i, (t, sev) in enumerate(zip(texts, severities, strict=True))]
    out = stitch(entries)
    assert [e.text for e in out] == ["\n".join([texts[0], texts[1], texts[3]]), texts[2]]
    assert signature_of(out[0])[0] == "KeyError at app/main.py handler"
    assert signature_of(out[1])[0] == "db timeout after <n> s"


def test_plain_text_tracebacks_in_a_row_are_separate_entries() -> None:
    first = "\n".join(SPLIT_LINES)
    texts = [e.text for e in parse_log_text(f"{first}\n{first}\nserving again\n")]
    assert texts == [first, first, "serving again"]


def test_a_json_lines_file_of_split_tracebacks_is_stitched_like_cloud_logging(tmp_path: Any) -> None:
    start = SINCE + timedelta(seconds=30)
    lines = split_entries(SPLIT_LINES, start, gap_s=0.002) + split_entries(KEY_LINES, start + timedelta(seconds=0.001),
                                                          instance=INSTANCE_B, gap_s=0.002)
    lines.sort(key=lambda e: str(e["timestamp"]))
    path = tmp_path / "exported.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in lines), encoding="utf-8")
    batch = ask(FileLogSource(path), traceback_lines=True)
    assert [(e.instance, signature_of(e)[0]) for e in batch.entries] == [
        (INSTANCE_A, SPLIT_KEY), (INSTANCE_B, "KeyError at orders/api.py handle_checkout")]
    assert batch.fetched == 3 + 5  # banners, frames and exception lines: KEY_LINES has three frames
    banners_only = ask(FileLogSource(path))
    assert [e.text for e in banners_only.entries] == ["Traceback (most recent call last):"] * 2


def test_json_lines_file() -> None:
    source = FileLogSource(LOGS / "local.jsonl", default_revision="orders-00042-new")
    batch = ask(source)
    assert [(e.severity, e.http_status) for e in batch.entries] == [("ERROR", None), ("INFO", 503)]
    assert batch.entries[0].text.endswith("KeyError: 'gift-card'") and batch.entries[0].revision == "orders-00042-new"
    anything = ask(source, min_severity=None, text_search=(), include_requests=False)
    assert len(anything.entries) == 5  # the previous revision's line and nothing outside the window
    old = asyncio.run(source.entries(RevisionScope("orders", "orders-00041-old"), SINCE - timedelta(hours=1), SINCE))
    assert [e.text for e in old.entries] == ["old failure"]


def test_plain_text_file_keeps_a_chained_traceback_in_one_entry() -> None:
    batch = ask(FileLogSource(LOGS / "local.txt"), text_search=("Traceback", "DeprecationWarning"))
    texts = [e.text for e in batch.entries]
    assert len(texts) == 2
    assert texts[0].startswith("ERROR sample: checkout failed") and texts[0].endswith("unknown item 'gift-card'")
    assert "During handling" in texts[0]
    assert texts[1].startswith("/srv/sample/db.py:17: DeprecationWarning") and texts[1].endswith("datetime.utcnow()")


def test_a_missing_file_has_no_entries(tmp_path: Any) -> None:
    assert ask(FileLogSource(tmp_path / "nothing.log")).entries == []


def test_a_log_file_is_read_again_once_it_changed(tmp_path: Any) -> None:
    path = tmp_path / "service.log"
    path.write_text("2026-11-25T10:04:00Z ERROR first failure\n", encoding="utf-8")
    source = FileLogSource(path)
    assert [e.text for e in source.read()] == ["ERROR first failure"]
    source.read().clear()  # callers get a copy: the kept entries are not theirs to change
    assert len(source.read()) == 1
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2026-11-25T10:05:00Z ERROR second failure\n")
    assert [e.text for e in source.read()] == ["ERROR first failure", "ERROR second failure"]
    path.unlink()
    assert source.read() == []
