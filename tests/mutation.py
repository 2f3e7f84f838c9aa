"""`make mutate`: mutmut on the verdict modules, then the survival rate per module and every surviving mutant.

    python tests/mutation.py [--workers N] [module.py ...]     # no module: all of [tool.mutmut] only_mutate

Every mutant of the chosen modules is run again each time (mutmut alone would keep old verdicts), so a
new test shows at once. mutmut works in mutants/ (git-ignored); its own output goes to mutants/mutmut.log.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import time
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.stats import status_by_exit_code
from mutmut.utils.format_utils import orig_function_and_class_names_from_key

ROOT = Path(__file__).resolve().parent.parent
EQUIVALENT_FILE = ROOT / "tests" / "data" / "mutation" / "equivalent.toml"
LOG = Path("mutants") / "mutmut.log"
STATS = Path("mutants") / "mutmut-stats.json"
DEFAULT_WORKERS = 2
PROGRESS_EVERY_S = 30.0
LOG_TAIL_LINES = 60
# mutmut's statuses, as this report counts them; "no tests" means no selected test calls the function.
KILLED = {"killed", "caught by type check"}
TIMEOUT = {"timeout"}
SURVIVED = {"survived", "no tests"}
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
HUNK = re.compile(r"^@@ -(\d+)")


@dataclass(frozen=True)
class Equivalent:
    """A surviving mutant that cannot change behaviour: matched by module, function and mutated line(s)."""

    module: str
    mutant: str
    after: str
    reason: str

    @property
    def function(self) -> str:
        return self.mutant.partition("__mutmut_")[0]


@dataclass
class Mutant:
    """One mutant that was not killed, with its diff and where it sits in the module."""

    module: str
    name: str
    status: str
    diff: list[str]
    line: int
    equivalent: Equivalent | None = None

    @property
    def after(self) -> str:
        return "\n".join(d[1:].strip() for d in self.diff if d.startswith("+"))


def mutated_modules() -> list[str]:
    """The modules mutmut mutates: only_mutate of [tool.mutmut] in pyproject.toml."""
    section = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [str(module) for module in section["only_mutate"]]


def load_equivalents(modules: list[str]) -> list[Equivalent]:
    """The named equivalent mutants; an entry without a reason or for an unknown module is an error."""
    if not EQUIVALENT_FILE.exists():
        return []
    entries = tomllib.loads(EQUIVALENT_FILE.read_text()).get("equivalent", [])
    equivalents = []
    for entry in entries:
        missing = [key for key in ("module", "mutant", "after", "reason") if not str(entry.get(key, "")).strip()]
        if missing:
            sys.exit(f"{EQUIVALENT_FILE.relative_to(ROOT)}: entry {entry} lacks {', '.join(missing)}")
        if entry["module"] not in modules:
            sys.exit(f"{EQUIVALENT_FILE.relative_to(ROOT)}: unknown module {entry['module']!r} (mutated: {', '.join(modules)})")
        equivalents.append(Equivalent(entry["module"], entry["mutant"], entry["after"].strip(), entry["reason"].strip()))
    return equivalents


def forget(modules: list[str]) -> None:
    """Clear the last verdicts of `modules`: a run cut short then shows the rest as not checked, not as they were."""
    for module in modules:
        data = SourceFileMutationData(path=module)
        if data.meta_path.exists():
            data.load()
            data.exit_code_by_key = dict.fromkeys(data.exit_code_by_key)
            data.save()


def mutant_glob(module: str, function: str = "") -> str:
    """mutmut's names for the mutants of a module, or of one function (``name``) or method (``Class.name``) in it."""
    prefix = module.removesuffix(".py").replace("/", ".")
    if not function:
        return prefix + ".*"
    owner, _, name = function.rpartition(".")
    return f"{prefix}.x{'ǁ' + owner + 'ǁ' if owner else '_'}{name}__mutmut_*"


def prune_stale_copies() -> None:
    """Delete the copies in mutants/ of files the work tree no longer has: mutmut copies but never deletes, so a module or
    test left there by a move would still be imported or collected, and break the run."""
    base = ROOT / "mutants"
    for stale in [c for c in base.rglob("*.py") if not (ROOT / c.relative_to(base)).exists()] if base.is_dir() else []:
        stale.unlink()


def run_mutmut(modules: list[str], workers: int, functions: dict[str, list[str]] | None = None) -> None:
    """`mutmut run` for every mutant of `modules` (only of the named functions where ``functions`` names some); its output
    goes to the log, with a progress line now and then."""
    chosen = functions or {}
    globs = [mutant_glob(module, f) for module in modules for f in (chosen.get(module) or [""])]
    command = [str(Path(sys.executable).parent / "mutmut"), "run", "--max-children", str(workers), *globs]
    LOG.parent.mkdir(exist_ok=True)
    # mutmut keeps which tests call which function from its first run; code or tests edited since can change
    # that, and a mutant run without the test that reaches it would pass for a survivor. So: measured anew.
    STATS.unlink(missing_ok=True)
    last_progress = time.monotonic()
    # Universal newlines turn mutmut's carriage-return spinner into lines.
    with LOG.open("w") as log, subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                encoding="utf-8", errors="replace",
                                                env={**os.environ, "PYTHONUNBUFFERED": "1"}) as mutmut:
        assert mutmut.stdout is not None
        for line in mutmut.stdout:
            log.write(line)
            text = line.strip()
            if not text or "__mutmut_" in text or text in ("Mutant results", "--------------"):
                continue
            if text[0] not in SPINNER:
                print(text, flush=True)
            elif time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                print(text[1:].strip(), flush=True)
                last_progress = time.monotonic()
    if mutmut.returncode != 0:
        tail = LOG.read_text().splitlines()[-LOG_TAIL_LINES:]
        print("\n".join(tail), file=sys.stderr)
        sys.exit(f"mutmut exited with {mutmut.returncode}; the whole output is in {LOG}")


def source_line(module: str, name: str, diff: list[str]) -> int:
    """The line in `module` of the first line the mutant changes (0 when the function is gone)."""
    function, cls = orig_function_and_class_names_from_key(name)
    lines = Path(module).read_text().splitlines()
    body: list[ast.stmt] = ast.parse("\n".join(lines)).body
    if cls is not None:
        body = next((node.body for node in body if isinstance(node, ast.ClassDef) and node.name == cls), [])
    node = next((n for n in body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function), None)
    if node is None:
        return 0
    start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    offset, changed = 0, ""
    for d in diff:
        if match := HUNK.match(d):
            offset = int(match.group(1)) - 1
        elif d.startswith("-"):
            changed = d[1:].strip()
            break
        elif d.startswith(" "):
            offset += 1
    guess = start + offset
    same = [n for n in range(start, (node.end_lineno or start) + 1) if lines[n - 1].strip() == changed]
    return min(same, key=lambda n: abs(n - guess)) if same else guess


def results(module: str, equivalents: list[Equivalent]) -> tuple[Counter[str], list[Mutant]]:
    """The status count of `module`'s mutants and those not killed, equivalents marked."""
    data = SourceFileMutationData(path=module)
    data.load()
    counts: Counter[str] = Counter()
    left: list[Mutant] = []
    for name, exit_code in data.exit_code_by_key.items():
        status = status_by_exit_code[exit_code]
        counts[status] += 1
        if status in KILLED | TIMEOUT:
            continue
        diff = get_diff_for_mutant(name, path=module).splitlines()[2:]
        mutant = Mutant(module, name, status, diff, source_line(module, name, diff))
        if status in SURVIVED:
            mutant.equivalent = next((e for e in equivalents if e.module == module and e.function == name.partition("__mutmut_")[0]
                                      and e.after == mutant.after), None)
        left.append(mutant)
    return counts, sorted(left, key=lambda m: (m.line, natural(m.name)))


def natural(name: str) -> tuple[str, int]:
    """Sorts report.score.x_score__mutmut_9 before report.score.x_score__mutmut_10."""
    function, _, number = name.partition("__mutmut_")
    return function, int(number or 0)


def print_table(rows: list[tuple[str, Counter[str], int]]) -> None:
    """Mutants, killed, survived, timeouts, other, equivalent and the share surviving, per module and in total."""
    width = max(len("module"), *(len(module) for module, _, _ in rows))
    print(f"\n{'module':<{width}}  mutants  killed  survived  timeouts  other  equivalent  surviving")
    if len(rows) > 1:
        total: Counter[str] = sum((counts for _, counts, _ in rows), Counter())
        rows = [*rows, ("total", total, sum(equivalent for _, _, equivalent in rows))]
    for module, counts, equivalent in rows:
        mutants = sum(counts.values())
        killed = sum(counts[s] for s in KILLED)
        timeouts = sum(counts[s] for s in TIMEOUT)
        survived = sum(counts[s] for s in SURVIVED) - equivalent
        other = mutants - killed - timeouts - survived - equivalent
        judged = mutants - equivalent - counts["not checked"]
        share = f"{100 * survived / judged:.1f}%" if judged else "-"
        print(f"{module:<{width}}  {mutants:>7}  {killed:>6}  {survived:>8}  {timeouts:>8}  {other:>5}  {equivalent:>10}  {share:>9}")


def print_mutants(mutants: list[Mutant], equivalents: list[Equivalent]) -> None:
    """Each mutant not killed with its diff, the equivalents with their reason, and entries that matched nothing."""
    survivors = [m for m in mutants if m.equivalent is None]
    if survivors:
        print(f"\nNot killed: write the test that kills each, or name it in {EQUIVALENT_FILE.relative_to(ROOT)}")
    for m in survivors:
        print(f"\n{m.module}:{m.line}  {m.name}  {m.status}")
        print("\n".join(f"    {d}" for d in m.diff if d[:1] in "+-"))
    for m in mutants:
        if m.equivalent is not None:
            print(f"\n{m.module}:{m.line}  {m.name}  equivalent: {m.equivalent.reason}")
    used = {m.equivalent for m in mutants}
    for e in equivalents:
        if e not in used:
            print(f"\n{EQUIVALENT_FILE.relative_to(ROOT)}: {e.mutant} ({e.after!r}) matches no surviving mutant: delete or update it")


def main(argv: list[str] | None = None) -> None:
    """Run mutmut on the chosen modules, then print the table and the survivors."""
    os.chdir(ROOT)
    mutated = mutated_modules()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="module.py[:function,Class.method]",
                        help=f"default: all of {', '.join(mutated)}; after a colon, only those functions' mutants")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"mutants run at once (default {DEFAULT_WORKERS})")
    parser.add_argument("--report-only", action="store_true", help="print the last run's results without running mutmut")
    args = parser.parse_args(argv)
    functions = {m.partition(":")[0]: [f for f in m.partition(":")[2].split(",") if f] for m in args.modules}
    unknown = [m for m in functions if m not in mutated]
    if unknown:
        parser.error(f"not mutated: {', '.join(unknown)} (mutated: {', '.join(mutated)})")
    modules = list(functions) or mutated
    equivalents = load_equivalents(mutated)
    if not args.report_only:
        prune_stale_copies()
        forget(modules)
        run_mutmut(modules, args.workers, functions)
    rows, left = [], []
    for module in modules:
        counts, mutants = results(module, equivalents)
        rows.append((module, counts, sum(m.equivalent is not None for m in mutants)))
        left += mutants
    print_table(rows)
    print_mutants(left, [e for e in equivalents if e.module in modules])


if __name__ == "__main__":
    main()
