"""Headless Chromium driven over the DevTools protocol (CDP), for tests that look at a page as a person would.

`Chromium` starts Debian's ``chromium`` with ``--remote-debugging-port=0``, reads the port it chose from
``DevToolsActivePort`` and speaks CDP's JSON over one WebSocket (the ``websockets`` library). `Chromium.open`
loads a page in a new tab and returns a `Page` that has collected, from its first request on, everything the page
did that a test may forbid: console errors and uncaught exceptions, every request it made (any that is not
``data:``, ``file:`` or ``about:`` is failed before it leaves, and recorded as external), and every dialog it
opened (dismissed at once, so a hostile ``alert`` cannot hang the test).

Also a command, for the README's picture (`make screenshot`):
``python -m tests.servers.browser PAGE.html OUT.png [--width 1280] [--max-height PX]``.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from websockets.sync.client import ClientConnection, connect

BINARIES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 30.0
STOP_GRACE_S = 5.0
DESKTOP = (1280, 800)
MAX_SHOT_HEIGHT = 16_384  # Chromium's own limit for one texture: a taller page is cut there
LOCAL_SCHEMES = ("data:", "file:", "about:")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Without the background-networking flags Chromium phones home at start (updates, sync, safe browsing), and the
# resolver rule makes any host name a page asks for fail here instead of leaving the machine.
FLAGS = (
    "--headless=new", "--remote-debugging-port=0", "--no-first-run", "--no-default-browser-check", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-default-apps",
    "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


class BrowserError(RuntimeError):
    """Chromium did not start, or a DevTools call failed or timed out."""


def find_chromium() -> str | None:
    """The Chromium binary on PATH (``$CHROMIUM`` first), or None."""
    candidates = [os.environ.get("CHROMIUM", ""), *BINARIES]
    return next((found for name in candidates if name and (found := shutil.which(name))), None)


def why_no_chromium() -> str:
    """Why there is no browser here and what would bring one, for a skip message."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        return "chromium is not installed: `make test` installs it (apt-get install chromium) before the tests"
    return ("chromium is not installed and this machine cannot install it (needs root and apt-get): "
            "install Debian's `chromium` or set CHROMIUM to a Chromium binary to run the browser tests")


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; ValueError when ``data`` is not a PNG."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError(f"not a PNG: starts with {data[:16]!r}")
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@dataclass
class Page:
    """One tab and what it did; `Chromium.open` makes it."""

    browser: Chromium
    session: str
    target: str
    url: str = ""
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    loaded: bool = False

    @property
    def external_requests(self) -> list[str]:
        """Every request to anything but ``data:``, ``file:`` and ``about:``: the page is not self-contained."""
        return [url for url in self.requests if not url.startswith(LOCAL_SCHEMES)]

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """A CDP command in this tab's session."""
        return self.browser.call(method, params, session=self.session)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the page (a promise is awaited); BrowserError when it throws."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression[:80]!r} threw: {result['exceptionDetails'].get('text')} "
                               f"{result['exceptionDetails'].get('exception', {}).get('description', '')}")
        return result["result"].get("value")

    def goto(self, url: str) -> None:
        """Load ``url`` and wait for its load event and one painted frame."""
        self.url, self.loaded = url, False
        answer = self.call("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise BrowserError(f"could not load {url}: {answer['errorText']}")
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while not self.loaded:
            self.browser.pump(deadline, f"the load event of {url}")
        self.evaluate("new Promise(done => requestAnimationFrame(() => setTimeout(done, 50)))")

    def screenshot(self, path: Path, max_height: int = MAX_SHOT_HEIGHT) -> Path:
        """The whole page at the window's width (up to ``max_height`` CSS pixels tall) as a PNG at ``path``."""
        metrics = self.call("Page.getLayoutMetrics")
        width = metrics["cssLayoutViewport"]["clientWidth"]
        height = min(max(metrics["cssContentSize"]["height"], 1), max_height)
        shot = self.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1},
        })
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        """Close the tab."""
        self.browser.call("Target.closeTarget", {"targetId": self.target})
        self.browser.pages.pop(self.session, None)

    def on_event(self, method: str, params: dict[str, Any]) -> None:
        """Record what the page did; answer what would block it (a dialog, a paused request)."""
        if method == "Page.loadEventFired":
            self.loaded = True
        elif method == "Network.requestWillBeSent":
            self.requests.append(params["request"]["url"])
        elif method == "Network.webSocketCreated":
            self.requests.append(params["url"])
        elif method == "Fetch.requestPaused":
            url = params["request"]["url"]
            if url not in self.requests:
                self.requests.append(url)
            if url.startswith(LOCAL_SCHEMES):
                self.browser.send("Fetch.continueRequest", {"requestId": params["requestId"]}, self.session)
            else:  # never let it leave: the test fails on the record, not on what the network answered
                self.browser.send("Fetch.failRequest", {"requestId": params["requestId"], "errorReason": "BlockedByClient"},
                                  self.session)
        elif method == "Page.javascriptDialogOpening":
            self.dialogs.append(f"{params['type']}: {params['message']}")
            self.browser.send("Page.handleJavaScriptDialog", {"accept": False}, self.session)
        elif method == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
            self.console_errors.append("console." + params["type"] + ": " + " ".join(
                str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.console_errors.append(f"uncaught: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            entry = params["entry"]
            self.console_errors.append(f"{entry['source']}: {entry['text']} {entry.get('url', '')}".strip())


class Chromium:
    """A headless Chromium for the length of a ``with`` block, with its own empty profile."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or find_chromium()
        if not found:
            raise BrowserError(why_no_chromium())
        self.binary = found
        self.pages: dict[str, Page] = {}
        self._profile = Path(tempfile.mkdtemp(prefix="postdeploy-chromium-"))
        self._process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._closing = contextlib.ExitStack()
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}

    def __enter__(self) -> Self:
        flags = [*FLAGS, f"--user-data-dir={self._profile}"]
        if os.geteuid() == 0:  # root (CI, or the tests' user namespace): Chromium's sandbox refuses to start as root
            flags.append("--no-sandbox")
        log = (self._profile / "chromium.log").open("wb")
        self._process = subprocess.Popen([self.binary, *flags, "about:blank"], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        try:
            self._ws = self._closing.enter_context(connect(self._devtools_url(), max_size=None, open_timeout=START_TIMEOUT_S))
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop()

    def _devtools_url(self) -> str:
        """The browser's WebSocket URL, from the DevToolsActivePort file Chromium writes once it listens."""
        port_file = self._profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise BrowserError(f"{self.binary} exited with {self._process.returncode} before DevTools listened:\n"
                                   + self.log()[-2000:])
            lines = port_file.read_text().splitlines() if port_file.exists() else []
            if len(lines) >= 2:
                return f"ws://127.0.0.1:{lines[0]}{lines[1]}"
            time.sleep(0.05)
        raise BrowserError(f"{self.binary} wrote no DevToolsActivePort in {START_TIMEOUT_S:.0f} s:\n" + self.log()[-2000:])

    def log(self) -> str:
        """What Chromium printed so far."""
        path = self._profile / "chromium.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def _stop(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                self.send("Browser.close")
            self._ws = None
        self._closing.close()
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(timeout=STOP_GRACE_S)
            with contextlib.suppress(ProcessLookupError):  # the renderers and the zygote too
                os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
            self._process = None
        shutil.rmtree(self._profile, ignore_errors=True)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        """Send a CDP command without waiting; its id."""
        if self._ws is None:
            raise BrowserError("the browser is not running")
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self._ws.send(json.dumps(message))
        return self._next_id

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        """Send a CDP command and wait for its answer, handing the events that arrive meanwhile to their pages."""
        sent = self.send(method, params, session)
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while sent not in self._answers:
            self.pump(deadline, method)
        answer = self._answers.pop(sent)
        if "error" in answer:
            raise BrowserError(f"{method} failed: {answer['error'].get('message')} {answer['error'].get('data', '')}".strip())
        return dict(answer.get("result", {}))

    def pump(self, deadline: float, waiting_for: str) -> None:
        """Read one message: keep an answer for `call`, give an event to its page."""
        assert self._ws is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise BrowserError(f"no {waiting_for} within {CALL_TIMEOUT_S:.0f} s")
        try:
            message = json.loads(self._ws.recv(timeout=left))
        except TimeoutError as exc:
            raise BrowserError(f"no {waiting_for} within {CALL_TIMEOUT_S:.0f} s") from exc
        if "id" in message:
            self._answers[message["id"]] = message
        elif (page := self.pages.get(message.get("sessionId", ""))) is not None:
            page.on_event(message["method"], message.get("params", {}))

    def open(self, url: str = "about:blank", size: tuple[int, int] = DESKTOP) -> Page:
        """A new tab ``size`` CSS pixels wide and high, watching from before its first request, at ``url``."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = self.pages[session] = Page(self, session, target)
        for domain in ("Page", "Runtime", "Log", "Network"):
            page.call(f"{domain}.enable")
        page.call("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        page.call("Emulation.setDeviceMetricsOverride", {"width": size[0], "height": size[1], "deviceScaleFactor": 1,
                                                         "mobile": False})
        if url != "about:blank":
            page.goto(url)
        return page


def main(argv: list[str] | None = None) -> int:
    """Screenshot a page (a file or a URL) to a PNG, at a desktop width, the whole page long."""
    parser = argparse.ArgumentParser(prog="python -m tests.servers.browser", description=main.__doc__)
    parser.add_argument("page", help="an HTML file, or a URL")
    parser.add_argument("png", type=Path, help="where to write the screenshot")
    parser.add_argument("--width", type=int, default=DESKTOP[0], help="window width in CSS pixels (default %(default)s)")
    parser.add_argument("--max-height", type=int, default=MAX_SHOT_HEIGHT, help="cut the page there (default %(default)s)")
    args = parser.parse_args(argv)
    url = args.page if "://" in args.page else Path(args.page).resolve().as_uri()
    with Chromium() as browser:
        page = browser.open(url, (args.width, DESKTOP[1]))
        page.screenshot(args.png, args.max_height)
        problems = page.console_errors + [f"external request: {u}" for u in page.external_requests]
    width, height = png_size(args.png.read_bytes())
    print(f"{args.png}: {width}×{height} px, {args.png.stat().st_size // 1024} KiB" +
          "".join(f"\n  warning: {p}" for p in problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
