"""Scoring (pure), rendering (pure) and publishing (storage, Slack)."""
