"""Is this build ours? Terminal SUCCESS builds that deploy Cloud Run, one intent per service and region.

Imports nothing from Google: the filter must ack foreign builds without an SDK import.
"""

from __future__ import annotations

import itertools
import re
import shlex
from collections.abc import Iterator
from dataclasses import replace

from core.model import Build, DeployIntent, Step

# Flags of `gcloud [beta] run deploy` / `run services update` (and gcloud-wide ones) that take no value, as
# `gcloud … --help` lists them; every `--no-…` and `--clear-…` flag takes none either. Any other flag written
# `--flag value` takes the next word, so a valueless flag missing here would swallow a service name after it.
_BOOLEAN_FLAGS = frozenset({
    "--allow-unauthenticated", "--allow-unencrypted-build", "--async", "--automatic-updates", "--cpu-boost",
    "--cpu-throttling", "--default-url", "--delegate-builds", "--deploy-health-check", "--dry-run",
    "--gpu-zonal-redundancy", "--iap", "--invoker-iam-check", "--log-http", "--quiet", "-q", "--session-affinity",
    "--ssh", "--use-http2", "--user-output-enabled",
})
_VALUELESS_PREFIXES = ("--no-", "--clear-")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_ASSIGNED = re.compile(r"(-[^=]*)=(.*)", re.DOTALL)  # --flag=value; the value may hold more "="
# `bash -c SCRIPT`, also with other short options in the same word: -ec, -euc, -xc, -ceu.
_SCRIPT_OPTION = re.compile(r"-[a-z]*c[a-z]*")
_SHELLS = frozenset({"bash", "sh"})
# gcr.io/cloud-builders/gcloud and gcloud-slim run gcloud as their entrypoint; cloud-sdk images have none.
_GCLOUD_BUILDER = "/cloud-builders/gcloud"


def _variables(build: Build) -> dict[str, str]:
    """What Cloud Build substitutes: the built-ins that come from the build's own fields, then its substitutions."""
    return {"PROJECT_ID": build.project_id, "BUILD_ID": build.id, **build.substitutions}


def _expand(text: str, variables: dict[str, str]) -> str:
    """Apply substitutions Cloud Build may have left as written ($_X, ${_X}, $PROJECT_ID); unknown ones stay."""
    return _VAR.sub(lambda m: variables.get(m.group(1) or m.group(2), m.group(0)), text)


def built_images(build: Build) -> tuple[str, ...]:
    """The build's ``images``, with the substitutions the published resource may still hold applied."""
    variables = _variables(build)
    return tuple(_expand(image, variables) for image in build.images)


def _program(word: str) -> str:
    """The program a command word runs: `gcloud` for /usr/bin/gcloud."""
    return word.rpartition("/")[2]


def _commands(step: Step, variables: dict[str, str]) -> Iterator[list[str]]:
    """Yield each command line a step runs: gcloud as the step's program, or every command of a shell script."""
    entrypoint, args = step.entrypoint, [_expand(a, variables) for a in step.args]
    if not entrypoint and args and _program(args[0]) in _SHELLS | {"gcloud"}:
        # An image without an entrypoint of its own (cloud-sdk, ubuntu) runs its first argument.
        entrypoint, args = args[0], args[1:]
    elif not entrypoint and _GCLOUD_BUILDER in step.name:
        entrypoint = "gcloud"
    program = _program(entrypoint)
    if program == "gcloud":
        yield ["gcloud", *args]
    elif program in _SHELLS:
        for i, arg in enumerate(args[:-1]):
            if _SCRIPT_OPTION.fullmatch(arg):
                yield from _split_script(args[i + 1])


def _split_script(script: str) -> Iterator[list[str]]:
    """The commands of a shell script, one word list each; comments and line continuations as the shell reads them."""
    for line in script.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        try:
            tokens = list(lexer)
        except ValueError:  # an unclosed quote: the line is still worth reading word by word
            tokens = line.split()
        for is_separator, words in itertools.groupby(tokens, key=lambda t: _is_separator(t, lexer.punctuation_chars)):
            if not is_separator:
                yield list(words)


def _is_separator(token: str, punctuation: str) -> bool:
    """shlex hands `;`, `&&`, `||`, `|`, `&` over as tokens of punctuation characters only; "" is a quoted word."""
    return bool(token) and all(c in punctuation for c in token)


def _flags(tokens: list[str]) -> tuple[list[str], dict[str, str]]:
    """Split `gcloud` arguments into positionals and flags (both --f=v and --f v forms)."""
    positional: list[str] = []
    flags: dict[str, str] = {}
    rest = list(tokens)
    while rest:
        token = rest.pop(0)
        if not token.startswith("-"):
            positional.append(token)
        elif assigned := _ASSIGNED.fullmatch(token):
            flags[assigned[1]] = assigned[2]
        elif token in _BOOLEAN_FLAGS or token.startswith(_VALUELESS_PREFIXES) or not rest or rest[0].startswith("--"):
            flags[token] = ""
        else:
            flags[token] = rest.pop(0)
    return positional, flags


def _run_deploy(tokens: list[str], project: str, region: str) -> list[DeployIntent]:
    """Read one `gcloud [alpha|beta] run deploy|services update SERVICE …` command: one intent per region.

    ``project`` and ``region`` apply when the command names none.
    """
    start = next((i for i, t in enumerate(tokens) if _program(t) == "gcloud"), None)
    if start is None:
        return []
    positional, flags = _flags(tokens[start + 1:])
    words = [w for w in positional if w not in {"alpha", "beta"}]
    if words[:2] == ["run", "deploy"]:
        verb, rest = "gcloud run deploy", words[2:]
    elif words[:3] == ["run", "services", "update"]:
        verb, rest = "gcloud run services update", words[3:]
    else:
        return []
    if not rest or flags.get("--platform", "managed") != "managed":
        return []
    image = flags.get("--image", "")
    intent = DeployIntent(
        service=rest[0],
        project=flags.get("--project") or project,
        image="" if "$" in image else image,  # a shell variable we cannot read
        no_traffic="--no-traffic" in flags,
        tag=flags.get("--tag", ""),
        revision_suffix=flags.get("--revision-suffix", ""),
        source=verb,
    )
    # `--regions=A,B` deploys a multi-region service: one service of that name in each region.
    regions = flags.get("--region") or flags.get("--regions") or region
    return [replace(intent, region=r) for r in regions.split(",")]


def deploy_intents(build: Build) -> list[DeployIntent]:
    """The Cloud Run services this build deployed, one per (project, region, service); empty for anything else."""
    subs = build.substitutions
    if "_GOOGLE_FUNCTION_TARGET" in subs:
        return []
    variables = _variables(build)
    default_region = subs.get("_DEPLOY_REGION", "")
    found: dict[tuple[str, str, str], DeployIntent] = {}
    for step in build.steps:
        for tokens in _commands(step, variables):
            for intent in _run_deploy(tokens, build.project_id, default_region):
                # A later command on the same service makes the newer revision: it replaces the earlier one.
                found[(intent.project, intent.region, intent.service)] = intent
    service = subs.get("_SERVICE_NAME")
    managed = subs.get("_PLATFORM", "managed") == "managed"
    if service and managed and not any(i.service == service for i in found.values()):
        found[(build.project_id, default_region, service)] = DeployIntent(
            service=service, region=default_region, project=build.project_id, image=next(iter(built_images(build)), ""),
            source="substitutions _SERVICE_NAME/_DEPLOY_REGION",
        )
    return list(found.values())


def is_candidate(build: Build) -> bool:
    """Terminal SUCCESS builds only; every other status is acked without work."""
    return build.status == "SUCCESS"
