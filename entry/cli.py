"""`python main.py demo | validate | rerun | replay | check-config` — the same pipeline as the function."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import stat
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

from core.errors import ConfigError, PostdeployError
from core.redact import redact_text

if TYPE_CHECKING:
    from core.config import Config

EXIT = {"PASS": 0, "WARN": 1, "FAIL": 2, "INCONCLUSIVE": 3}
ROOT = Path(__file__).resolve().parent.parent
EXIT_USAGE = 4
LOG_FILE_EXPECTED = "a readable JSON-lines or text log file"
CONFIG_EXPECTED = "a readable YAML config file"
PYTHON_EXPECTED = "an executable Python interpreter (a path, or a name on PATH)"
PATTERN_EXPECTED = "a glob matching at least one readable file"
# A host name or an IPv4 address as urlsplit gives it (lower case) files a --url report under itself; anything else
# (an IPv6 address, "..") under "url".
_HOST = re.compile(r"[a-z0-9][a-z0-9.-]{0,252}")
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


EPILOG = f"""exit codes (validate, rerun, replay):
  {EXIT["PASS"]}  PASS           the deploy is good
  {EXIT["WARN"]}  WARN           good enough to keep, with something to look at
  {EXIT["FAIL"]}  FAIL           the deploy is broken: the report says why and how to roll back
  {EXIT["INCONCLUSIVE"]}  INCONCLUSIVE   postdeploy could not measure enough to judge (never the deploy's fault)
  {EXIT_USAGE}  usage          a flag, file or config that cannot work: the message says what was expected
  check-config exits 0 for a valid config, {EXIT_USAGE} for an invalid one; demo exits 0 once its report is
  written, whatever the verdict, and 1 when it could not validate.

examples:
  python main.py demo --broken
  python main.py validate --project acme-prod --region us-central1 --service orders
  python main.py validate --url https://orders-abc-uc.a.run.app --service orders --out gs://acme-reports/postdeploy
  python main.py rerun 5f1c2a9e-7d41-4b8e-9c3a-0e6b2d8f1a77 --service orders
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python main.py", description="Validate a Cloud Run deploy and score it.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = sub.add_parser("demo", help="offline: validate the bundled sample service on loopback")
    demo.add_argument("--broken", action="store_true", help="break the sample service to see a FAIL")
    demo.add_argument("--out", default="./reports", help="report folder (default ./reports)")
    val = sub.add_parser("validate", help="validate a deployed service or any URL now")
    val.add_argument("--url", help="validate this URL (no Cloud Run API needed)")
    val.add_argument("--project")
    val.add_argument("--region")
    val.add_argument("--service", help="service name (with --url: the name to file the report under)")
    val.add_argument("--revision", help="a revision name (default: the service's latest created revision)")
    val.add_argument("--config", help="postdeploy.yaml (default: POSTDEPLOY_CONFIG, else postdeploy.yaml beside main.py, else none)")
    val.add_argument("--out", help="report folder or gs://bucket[/prefix] (default POSTDEPLOY_REPORTS or ./reports)")
    val.add_argument("--slack", action="store_true", help="also post to the configured Slack webhook")
    val.add_argument("--python", help="run the imports probe with this local interpreter instead of a Cloud Run job")
    val.add_argument("--log-file", help="judge this JSON-lines or text log file instead of Cloud Logging")
    again = sub.add_parser("rerun", help="validate again the revision a stored report names; files the new report beside it")
    again.add_argument("build_id", metavar="BUILD_ID", help="the build whose stored report names the revision")
    again.add_argument("--service", required=True, help="the service the report is filed under")
    again.add_argument("--config", help="postdeploy.yaml (default: as for validate)")
    again.add_argument("--out", help="where the stored report is, and the new one goes (default POSTDEPLOY_REPORTS or ./reports)")
    again.add_argument("--slack", action="store_true", help="also post to the configured Slack webhook")
    again.set_defaults(log_file=None, python=None)  # the flags of validate that rerun does not take
    rep = sub.add_parser("replay", help="feed a saved Pub/Sub message or CloudEvent JSON through the function path")
    rep.add_argument("file")
    rep.add_argument("--config")
    rep.add_argument("--out")
    chk = sub.add_parser("check-config", help="validate a config file offline")
    chk.add_argument("file")
    return parser


def console_progress(what: str, done: float) -> None:
    """A one-line progress bar on a terminal's stderr (nothing when stderr is not a terminal)."""
    if not sys.stderr.isatty():
        return
    filled = int(done * 30)
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done:4.0%} {what[:60]:<60}")
    if done >= 1.0:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _print_validation(report: dict[str, Any], links: dict[str, str]) -> None:
    from report.render import render_table

    print(render_table(report))
    print("\n   reports:")
    for name in ("report.md", "report.html", "report.json"):
        print(f"     {links[name]}")
    print()


def _worst(verdicts: list[str]) -> int:
    return max((EXIT[v] for v in verdicts), default=0)


def _err(text: str) -> None:
    """One line on stderr, redacted: it may quote a flag's value, a message or an API's answer."""
    print(redact_text(text), file=sys.stderr)


def _usage(flag: str, expected: str, found: str) -> int:
    """One line on stderr naming the flag, what it takes and what it was given; the usage exit code."""
    _err(f"{flag}: expected {expected}, found {found}")
    return EXIT_USAGE


def _file_problem(path: str) -> str | None:
    """What is at ``path`` when it is not a readable regular file ("nothing at …", "a directory at …"), else None."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return f"nothing at {path}"
    except OSError as exc:
        return f"{path}, which cannot be examined ({exc.strerror})"
    if not stat.S_ISREG(mode):
        kind = next((name for is_kind, name in _KINDS if is_kind(mode)), "something other than a regular file")
        return f"{kind} at {path}"
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        return f"an unreadable file at {path} ({exc.strerror})"
    return None


def _python_problem(value: str) -> str | None:
    """What ``--python`` names when it is not an executable (a path, or a bare name looked up on PATH), else None."""
    if shutil.which(value):
        return None
    if not os.path.dirname(value):
        return f"no {value} on PATH"
    if not os.path.exists(value):
        return f"nothing at {value}"
    if os.path.isdir(value):
        return f"a directory at {value}"
    return f"a file without execute permission at {value}"


def _config_problem(value: str | None) -> str | None:
    """A local ``--config`` that is not a readable file; a gs:// one is read (and judged) by core.config.load."""
    if not value or value.startswith("gs://"):
        return None
    return _file_problem(value)


def _pattern_usage(config: Config, service: str) -> int | None:
    """Exit 4 for a local, variable-free tests pattern of the service's settings that finds no readable file."""
    from sources.artifacts import LocalArtifacts

    tests: Any = config.for_service(service).check("tests")
    if not tests.enabled:
        return None
    # The same finder, over the same folder, as the tests check will use through Adapters.from_env.
    local = LocalArtifacts(".")
    for i, pattern in enumerate(tests.patterns):
        if pattern.startswith("gs://") or "$" in pattern:
            continue  # a bucket is not listed before the run; variables get their values from the build
        where = f"checks.tests.patterns[{i}]"
        try:
            names = local.find(pattern)
        except ValueError:
            return _usage(where, f"{PATTERN_EXPECTED} inside {local.root} (where validate reads local results)",
                          f"{pattern} (service {service}, config {config.source})")
        except FileNotFoundError:
            names = []
        if not any(os.access(local.root / name, os.R_OK) for name in names):
            return _usage(where, PATTERN_EXPECTED, f"no match for {pattern} from {local.root} (service {service}, config {config.source})")
    return None


def _validate_usage(args: argparse.Namespace) -> int | None:
    """Exit 4 for a flag of `validate` that cannot work, checked before any adapter exists; None when all can."""
    if (problem := _config_problem(args.config)) is not None:
        return _usage("--config", CONFIG_EXPECTED, problem)
    if args.log_file and (problem := _file_problem(args.log_file)) is not None:
        return _usage("--log-file", LOG_FILE_EXPECTED, problem)
    if args.python and (problem := _python_problem(args.python)) is not None:
        return _usage("--python", PYTHON_EXPECTED, problem)
    if args.slack:
        from core.config import load
        from report.slack import WEBHOOK_ENV, WEBHOOK_SECRET_ENV  # the names webhook_url() reads

        if not any(os.environ.get(name, "").strip() for name in (WEBHOOK_ENV, WEBHOOK_SECRET_ENV)) \
                and not load(args.config).file.notify:
            return _usage("--slack", f"a webhook URL in {WEBHOOK_ENV}, a Secret Manager version in {WEBHOOK_SECRET_ENV} "
                                     "or notify routes in the config", "none of them")
    return None


def cmd_check_config(args: argparse.Namespace) -> int:
    from core.config import Config

    path = Path(args.file)
    if (problem := _file_problem(args.file)) is not None:
        return _usage("check-config FILE", CONFIG_EXPECTED, problem)
    try:
        config = Config.parse(path.read_text(encoding="utf-8"), str(path))
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            _err(f"  {problem}")
        return EXIT_USAGE
    from checks import REGISTRY

    enabled = [n for n in REGISTRY if config.defaults.check(n).enabled]
    print(f"{path}: OK — {len(config.file.services)} service section(s); checks enabled by default: {', '.join(enabled)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from demo.run import run_demo

    handled = run_demo(args.out, broken=args.broken, progress=console_progress)
    for v in handled.validations:
        _print_validation(v.report, v.links)
    if handled.kind != "validated":
        _err(f"demo did not validate: {handled.reason}")
        return 1
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from core.config import load
    from core.model import DeployIntent
    from core.pipeline import (
        Adapters,
        local_log_source,
        local_probe_runner,
        manual_build,
        url_settings,
        url_target,
        validate_intent,
        validate_target,
    )
    from trigger.resolve import SERVICE_NAME_EXPECTED, is_service_name, quoted

    if args.service and not is_service_name(args.service):  # reports are filed under it: never a path of its own
        return _usage("--service", f"a Cloud Run service name ({SERVICE_NAME_EXPECTED})", quoted(args.service))
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            _err(f"expected --url http(s)://host[/path], found {args.url!r}")
            return EXIT_USAGE
        host = parts.hostname or ""
        name = args.service or (host if _HOST.fullmatch(host) else "url")
    else:
        missing = [f"--{n}" for n in ("project", "region", "service") if not getattr(args, n)]
        if missing:
            print(f"expected --url URL, or --project, --region and --service; missing {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
        name = args.service
    if (code := _validate_usage(args)) is not None:
        return code
    config = load(args.config)
    if (code := _pattern_usage(config, name)) is not None:
        return code

    adapters = Adapters.from_env(args.out)
    adapters.progress = console_progress
    if not args.slack:
        adapters.post_slack = False
    if args.python:
        adapters.probe_runner = local_probe_runner(args.python)
    if args.log_file:
        adapters.log_source = local_log_source(args.log_file)
    build = manual_build()
    if args.url:
        settings = url_settings(config.for_service(name))
        target = url_target(args.url, name)
        validation = asyncio.run(validate_target(target, build, settings, adapters, time.monotonic() + settings.deadline_s))
    else:
        intent = DeployIntent(service=name, region=args.region, project=args.project, source="command line")
        validation = asyncio.run(validate_intent(build, intent, config.for_service(name), adapters,
                                                 revision=args.revision or ""))
    if validation is None:
        return EXIT_USAGE
    _print_validation(validation.report, validation.links)
    return EXIT[validation.report["verdict"]]


def cmd_rerun(args: argparse.Namespace) -> int:
    from core.config import load
    from core.pipeline import Adapters
    from entry.rerun import Refused, checked, rerun

    names = {"build_id": "BUILD_ID", "service": "--service"}
    try:
        rerun_id = checked(args.build_id, args.service, names=names)
    except Refused as exc:
        _err(exc.message(names))
        return EXIT_USAGE
    if (code := _validate_usage(args)) is not None:
        return code
    config = load(args.config)
    adapters = Adapters.from_env(args.out)
    adapters.progress = console_progress
    if not args.slack:
        adapters.post_slack = False
    try:
        validation = rerun(args.build_id, args.service, config, adapters, rerun_id)
    except Refused as exc:
        _err(exc.message(names))
        return EXIT_USAGE
    if validation is None:
        return EXIT_USAGE
    _print_validation(validation.report, validation.links)
    return EXIT[validation.report["verdict"]]


def cmd_replay(args: argparse.Namespace) -> int:
    from core.config import load
    from core.pipeline import Adapters
    from entry.function import handle

    try:
        payload = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        _err(f"{args.file}: expected a JSON Pub/Sub message or CloudEvent, found: {exc}")
        return EXIT_USAGE
    except RecursionError:
        print(f"{args.file}: expected a JSON Pub/Sub message or CloudEvent, found JSON nested deeper than Python's "
              "recursion limit", file=sys.stderr)
        return EXIT_USAGE
    if (problem := _config_problem(args.config)) is not None:
        return _usage("--config", CONFIG_EXPECTED, problem)
    # Without --config the function's own path loads POSTDEPLOY_CONFIG (and reports it when invalid).
    config = load(args.config) if args.config else None
    handled = handle(payload, config=config, adapters=Adapters.from_env(args.out))
    if handled.kind != "validated":
        print(f"{handled.kind}: {redact_text(handled.reason)}")
        return {"bad": EXIT_USAGE, "error": EXIT["INCONCLUSIVE"]}.get(handled.kind, 0)
    for v in handled.validations:
        _print_validation(v.report, v.links)
    if not handled.validations:
        print("already validated (claimed by an earlier delivery)")
    return _worst([v.report["verdict"] for v in handled.validations])


def main(argv: list[str]) -> int:
    """Run one CLI command; returns the exit code (0 PASS, 1 WARN, 2 FAIL, 3 INCONCLUSIVE, 4 usage)."""
    from core.logs import use_console

    use_console()
    args = _parser().parse_args(argv)
    handler = {"demo": cmd_demo, "validate": cmd_validate, "rerun": cmd_rerun, "replay": cmd_replay,
               "check-config": cmd_check_config}
    try:
        return handler[args.command](args)
    except ConfigError as exc:
        print(f"{exc.source}: invalid config", file=sys.stderr)
        for problem in exc.problems:
            _err(f"  {problem}")
        return EXIT_USAGE
    except PostdeployError as exc:
        _err(f"error: {exc}")
        return EXIT["INCONCLUSIVE"]
