"""A local Slack incoming webhook that records posts and replays scripted responses."""

from __future__ import annotations

import json
import threading
from typing import Any

from tests.servers.loopback import LoopbackHandler, LoopbackServer

ScriptedResponse = tuple[int, dict[str, str], str]
DEFAULT_RESPONSE: ScriptedResponse = (200, {"Content-Type": "text/plain"}, "ok")
WEBHOOK_PATH = "/services/T000/B000/XXXX"


class _Handler(LoopbackHandler["SlackReceiver"]):
    def do_POST(self) -> None:
        """Record the posted body and answer with the next scripted response."""
        status, headers, body = self.owner._record(self.read_body())
        self.send_text(status, body, headers)


class SlackReceiver(LoopbackServer):
    """Webhook receiver on 127.0.0.1; `.url` is the webhook URL to post to."""

    def __init__(self) -> None:
        super().__init__(_Handler, "slack receiver")
        self.messages: list[dict[str, Any]] = []
        self.bodies: list[bytes] = []  # as they came on the wire, for tests that grep them
        self.responses: list[ScriptedResponse] = []
        self._cond = threading.Condition()

    @property
    def url(self) -> str:
        """Webhook URL of the running receiver."""
        return f"{self.base_url}{WEBHOOK_PATH}"

    def start(self) -> str:
        """Start serving and return the webhook URL."""
        super().start()
        return self.url

    def wait_for(self, n: int, timeout: float = 5.0) -> bool:
        """Wait until at least `n` messages were recorded; return whether they were."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self.messages) >= n, timeout)

    def _record(self, raw: bytes) -> ScriptedResponse:
        try:
            message = json.loads(raw) if raw else {}
        except ValueError:
            message = {"_raw": raw.decode(errors="replace")}
        with self._cond:
            self.bodies.append(raw)
            self.messages.append(message)
            self._cond.notify_all()
            return self.responses.pop(0) if self.responses else DEFAULT_RESPONSE
