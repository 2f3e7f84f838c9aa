"""`python main.py --help`: the exit codes it lists are the ones the CLI returns, and its examples parse."""

from __future__ import annotations

import re
import shlex

import pytest

from entry.cli import EXIT, EXIT_USAGE, _parser
from tests.entry.test_cli import cli


@pytest.fixture(scope="module")
def shown() -> str:
    done = cli("--help")
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_help_lists_every_exit_code_with_its_meaning(shown: str) -> None:
    listed = {name: int(code) for code, name in re.findall(r"^  (\d)  (PASS|WARN|FAIL|INCONCLUSIVE|usage)\b", shown, re.M)}
    assert listed == {**EXIT, "usage": EXIT_USAGE}


def test_the_examples_in_help_are_commands_the_cli_takes(shown: str) -> None:
    examples = [line.strip() for line in shown.split("examples:", 1)[1].splitlines() if line.strip()]
    assert len(examples) >= 3 and all(e.startswith("python main.py ") for e in examples)
    for example in examples:
        args = _parser().parse_args(shlex.split(example)[2:])  # a usage error would exit 4 here
        assert args.command in ("demo", "validate", "rerun", "replay", "check-config")
