"""Is this build ours? Terminal SUCCESS builds that deploy Cloud Run, one intent per service.

Imports nothing from Google: the filter must ack foreign builds without an SDK import.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable, Iterator
from dataclasses import replace

from core.model import Build, DeployIntent

# Flags of `gcloud run deploy` / `services update` that take no value.
_BOOLEAN_FLAGS = frozenset({
    "--no-traffic", "--async", "--quiet", "-q", "--allow-unauthenticated", "--use-http2",
    "--cpu-boost", "--cpu-throttling", "--session-affinity", "--default-url", "--invoker-iam-check",
    "--clear-env-vars", "--clear-labels", "--clear-secrets", "--clear-vpc-connector",
    "--clear-network", "--clear-cloudsql-instances", "--clear-post-key-revocation-action-type",
    "--clear-key", "--clear-volumes", "--clear-volume-mounts", "--clear-binary-authorization",
    "--clear-custom-audiences", "--clear-network-tags", "--clear-encryption-key-shutdown-hours",
    "--gpu-zonal-redundancy", "--iap", "--mesh", "--breakglass", "--base-image-update",
})
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_SEPARATORS = frozenset({"&&", "||", ";", "|", "\n"})


def _expand(text: str, variables: dict[str, str]) -> str:
    """Apply substitutions Cloud Build may have left in step args ($_X, ${_X}, $PROJECT_ID)."""
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def _commands(step_args: Iterable[str], entrypoint: str, image: str) -> Iterator[list[str]]:
    """Yield each gcloud command line a step runs, whether as entrypoint or inside a shell script."""
    args = list(step_args)
    base = entrypoint.rsplit("/", 1)[-1]
    if base == "gcloud" or (not entrypoint and ("gcloud" in image or "cloud-sdk" in image or "cloud-cli" in image)):
        # An image without a gcloud entrypoint gets `gcloud` as its first argument.
        yield args if args and args[0].rsplit("/", 1)[-1] == "gcloud" else ["gcloud", *args]
        return
    if base in {"bash", "sh", "/bin/sh", "/bin/bash"} or not entrypoint:
        scripts = [args[i + 1] for i, a in enumerate(args[:-1]) if a in {"-c", "-ec", "-eu", "-euc", "-eo"}]
        if not scripts and base in {"bash", "sh"}:
            scripts = [a for a in args if "gcloud" in a]
        for script in scripts:
            yield from _split_script(script)


def _split_script(script: str) -> Iterator[list[str]]:
    script = script.replace("\\\n", " ")
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        lexer.commenters = "#"
        try:
            tokens = list(lexer)
        except ValueError:
            tokens = line.split()
        current: list[str] = []
        for token in tokens:
            if token in _SEPARATORS or set(token) <= set(";&|"):
                if current:
                    yield current
                current = []
            else:
                current.append(token)
        if current:
            yield current


def _flags(tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split `gcloud` arguments into positionals and flags (both --f=v and --f v forms)."""
    positional: list[str] = []
    flags: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.startswith("-"):
            if "=" in token:
                key, value = token.split("=", 1)
                flags[key] = value
            elif token in _BOOLEAN_FLAGS or token.startswith("--no-") or i + 1 >= len(tokens) or tokens[i + 1].startswith("--"):
                flags[token] = "true"
            else:
                flags[token] = tokens[i + 1]
                i += 1
        else:
            positional.append(token)
        i += 1
    return positional, flags


def _run_deploy(tokens: list[str]) -> DeployIntent | None:
    """Read one `gcloud [beta] run deploy|services update SERVICE …` command, or None."""
    try:
        start = tokens.index("gcloud")
    except ValueError:
        start = next((i for i, t in enumerate(tokens) if t.endswith("/gcloud")), -1)
        if start < 0:
            return None
    positional, flags = _flags(tokens[start + 1:])
    words = [w for w in positional if w not in {"alpha", "beta"}]
    if words[:2] == ["run", "deploy"]:
        verb, rest = "gcloud run deploy", words[2:]
    elif words[:3] == ["run", "services", "update"]:
        verb, rest = "gcloud run services update", words[3:]
    else:
        return None
    if flags.get("--platform", "managed") != "managed":
        return None
    service = rest[0] if rest else flags.get("--service", "")
    if not service:
        return None
    return DeployIntent(
        service=service,
        region=flags.get("--region", ""),
        project=flags.get("--project", ""),
        image="" if "$" in flags.get("--image", "") else flags.get("--image", ""),  # a shell variable we cannot read
        no_traffic=flags.get("--no-traffic", "false") == "true",
        tag=flags.get("--tag", ""),
        revision_suffix=flags.get("--revision-suffix", ""),
        source=verb,
    )


def deploy_intents(build: Build) -> list[DeployIntent]:
    """The Cloud Run services this build deployed (empty for anything else)."""
    subs = build.substitutions
    if "_GOOGLE_FUNCTION_TARGET" in subs:
        return []
    variables = {"PROJECT_ID": build.project_id, "BUILD_ID": build.id, **subs}
    found: dict[str, DeployIntent] = {}
    for step in build.steps:
        args = [_expand(a, variables) for a in step.args]
        for tokens in _commands(args, _expand(step.entrypoint, variables), step.name):
            intent = _run_deploy(tokens)
            if intent:
                region = intent.region or subs.get("_DEPLOY_REGION", "")
                key = f"{intent.project}/{region}/{intent.service}"
                found[key] = replace(intent, region=region, project=intent.project or build.project_id)
    service = subs.get("_SERVICE_NAME", "")
    managed = subs.get("_PLATFORM", "managed") == "managed"
    if service and managed and not any(i.service == service for i in found.values()):
        image = next(iter(build.images), "")
        region = subs.get("_DEPLOY_REGION", "")
        found[f"/{region}/{service}"] = DeployIntent(
            service=service, region=region, project=build.project_id, image=image,
            source="substitutions _SERVICE_NAME/_DEPLOY_REGION",
        )
    return list(found.values())


def is_candidate(build: Build) -> bool:
    """Terminal SUCCESS builds only; every other status is acked without work."""
    return build.status == "SUCCESS"
