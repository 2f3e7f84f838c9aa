"""Golden paths: configured in paths, run step by step (HTTP, WebSocket) by run, sharing a session."""
