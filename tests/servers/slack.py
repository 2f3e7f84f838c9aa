"""A local Slack incoming webhook that records posts and replays scripted responses, on one path or several."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from tests.servers.loopback import LoopbackHandler, LoopbackServer

ScriptedResponse = tuple[int, dict[str, str], str]
DEFAULT_RESPONSE: ScriptedResponse = (200, {"Content-Type": "text/plain"}, "ok")
WEBHOOK_PATH = "/services/T000/B000/XXXX"
HOOK_PREFIX = "/services/T000/B000/"


class _Handler(LoopbackHandler["SlackReceiver"]):
    def do_POST(self) -> None:
        """Record the posted body and answer with the next scripted response (after the scripted delay)."""
        status, headers, body, delay = self.owner._record(self.path, self.read_body())
        if delay:
            time.sleep(delay)  # the message is recorded: like Slack, posted before the answer is late
        self.send_text(status, body, headers)


class SlackReceiver(LoopbackServer):
    """Webhook receiver on 127.0.0.1; `.url` is the webhook URL to post to, `url_for(name)` one of many more."""

    def __init__(self) -> None:
        super().__init__(_Handler, "slack receiver")
        self.messages: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []  # as they came on the wire, for tests that grep them
        self.paths: list[str] = []  # the path each message was posted to, in the same order
        self.responses: list[ScriptedResponse] = []  # for any path without responses of its own
        self.responses_for: dict[str, list[ScriptedResponse]] = {}  # by webhook name (see url_for)
        self.delay_s = 0.0  # how long every answer is held back
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        """Webhook URL of the running receiver."""
        return f"{self.base_url}{WEBHOOK_PATH}"

    def url_for(self, name: str) -> str:
        """Another webhook on the same receiver: one channel per name."""
        return f"{self.base_url}{HOOK_PREFIX}{name}"

    def messages_to(self, name: str) -> list[dict[str, Any]]:
        """The messages posted to `url_for(name)`."""
        with self._cond:
            return [m for m, p in zip(self.messages, self.paths, strict=True) if p == HOOK_PREFIX + name]

    def start(self) -> str:
        """Start serving and return the webhook URL."""
        super().start()
        return self.url

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least `n` messages were recorded; return whether they were."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def _record(self, path: str, raw: bytes) -> tuple[int, dict[str, str], str, float]:
        try:
            message = json.loads(raw) if raw else {}
        except ValueError:
            message = {"_raw": raw.decode(errors="replace")}
        with self._cond:
            self.bodies.append(raw)
            self.messages.append(message)
            self.paths.append(path)
            self._cond.notify_all()
            own = self.responses_for.get(path.removeprefix(HOOK_PREFIX))
            queue = own if own else self.responses
            return (*(queue.pop(0) if queue else DEFAULT_RESPONSE), self.delay_s)
