"""The checks, by name. Every module has NAME, CATEGORY, Config and ``async def run(target, config, ctx)``."""

from __future__ import annotations

from types import ModuleType

from checks import deployment, health, imports, logs, metrics, smoke, tests, window

REGISTRY: dict[str, ModuleType] = {
    deployment.NAME: deployment,
    health.NAME: health,
    imports.NAME: imports,
    logs.NAME: logs,
    metrics.NAME: metrics,
    smoke.NAME: smoke,
    tests.NAME: tests,
    window.NAME: window,
}
