"""`python main.py demo | validate | replay | check-config` — the same pipeline as the function."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from core.errors import ConfigError, PostdeployError

EXIT = {"PASS": 0, "WARN": 1, "FAIL": 2, "INCONCLUSIVE": 3}
ROOT = Path(__file__).resolve().parent.parent
EXIT_USAGE = 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python main.py", description="Validate a Cloud Run deploy and score it.")
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


def cmd_check_config(args: argparse.Namespace) -> int:
    from core.config import Config

    path = Path(args.file)
    if not path.exists():
        print(f"{path}: expected a config file, found nothing", file=sys.stderr)
        return EXIT_USAGE
    try:
        config = Config.parse(path.read_text(encoding="utf-8"), str(path))
    except ConfigError as exc:
        print(f"{path}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    from checks import REGISTRY

    enabled = [n for n in REGISTRY if config.defaults.check(n).enabled]
    print(f"{path}: OK — {len(config.file.services)} service section(s); checks enabled by default: {', '.join(enabled)}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile
    from datetime import datetime

    from core import demo
    from core.artifacts import open_artifacts
    from core.entry import handle
    from core.pipeline import Adapters, local_log_source, local_probe_runner
    from core.sample_service import SampleService
    from report.store import LocalStore

    now = datetime.now(UTC)
    build_id = f"demo-{now.strftime('%Y%m%dT%H%M%S%fZ')}"
    # Broken: /health and order creation fail, and every request logs a KeyError traceback the old revision never had.
    mode = "broken+raising" if args.broken else "healthy"
    with tempfile.TemporaryDirectory(prefix="postdeploy-demo-") as artifacts_root:
        log_path = Path(artifacts_root) / "sample-app.log"
        demo.write_previous_log(log_path, now)
        with SampleService(mode=mode, log_path=log_path, revision=demo.NEW_REVISION) as service:
            demo.serve_traffic(service.url)
            location = demo.write_test_results(Path(artifacts_root), build_id, args.broken)
            adapters = Adapters(revisions=lambda: demo.demo_source(service.url, build_id, now),
                                store=lambda: LocalStore(args.out), webhook=lambda: "",
                                artifacts=lambda: open_artifacts(artifacts_root),
                                probe_runner=local_probe_runner(sys.executable, str(ROOT)),
                                log_source=local_log_source(log_path),
                                progress=console_progress)
            handled = handle(demo.demo_message(demo.demo_build(build_id, now, location)), config=demo.demo_config(),
                             adapters=adapters)
    for v in handled.validations:
        _print_validation(v.report, v.links)
    if handled.kind != "validated":
        print(f"demo did not validate: {handled.reason}", file=sys.stderr)
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

    config = load(args.config)
    adapters = Adapters.from_env(args.out)
    adapters.progress = console_progress
    if not args.slack:
        adapters.webhook = lambda: ""
    if args.python:
        adapters.probe_runner = local_probe_runner(args.python)
    if args.log_file:
        adapters.log_source = local_log_source(args.log_file)
    build = manual_build()
    if args.url:
        parts = urlsplit(args.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            print(f"expected --url http(s)://host[/path], found {args.url!r}", file=sys.stderr)
            return EXIT_USAGE
        name = args.service or parts.hostname or "url"
        settings = url_settings(config.for_service(name))
        target = url_target(args.url, name)
        validation = asyncio.run(validate_target(target, build, settings, adapters, time.monotonic() + settings.deadline_s))
    else:
        missing = [f"--{n}" for n in ("project", "region", "service") if not getattr(args, n)]
        if missing:
            print(f"expected --url URL, or --project, --region and --service; missing {', '.join(missing)}", file=sys.stderr)
            return EXIT_USAGE
        intent = DeployIntent(service=args.service, region=args.region, project=args.project, source="command line")
        validation = asyncio.run(validate_intent(build, intent, config.for_service(args.service), adapters,
                                                 revision=args.revision or ""))
    if validation is None:
        return EXIT_USAGE
    _print_validation(validation.report, validation.links)
    return EXIT[validation.report["verdict"]]


def cmd_replay(args: argparse.Namespace) -> int:
    from core.config import load
    from core.entry import handle
    from core.pipeline import Adapters

    try:
        payload = json.loads(Path(args.file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"{args.file}: expected a JSON Pub/Sub message or CloudEvent, found: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Without --config the function's own path loads POSTDEPLOY_CONFIG (and reports it when invalid).
    config = load(args.config) if args.config else None
    handled = handle(payload, config=config, adapters=Adapters.from_env(args.out))
    if handled.kind != "validated":
        print(f"{handled.kind}: {handled.reason}")
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
    handler = {"demo": cmd_demo, "validate": cmd_validate, "replay": cmd_replay, "check-config": cmd_check_config}
    try:
        return handler[args.command](args)
    except ConfigError as exc:
        print(f"{exc.source}: invalid config", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except PostdeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT["INCONCLUSIVE"]
