"""Config building blocks shared by core.config and every check's own settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from core.expect import parse_all

CATEGORIES = ("Deployment", "Migration", "Stability", "Business", "Testing")
FUNCTION_TIMEOUT_S = 540.0
# Evidence the logs check writes and the report page reads: how it measured (shown folded), and its signature rows
# (shown as a table, so not again as evidence).
ENTRIES_LIST_CALLS = "entries.list calls"
ENTRIES_READ = "entries read"
DIAGNOSTIC_EVIDENCE = (ENTRIES_LIST_CALLS, f"{ENTRIES_READ} (")


def signature_evidence(kind: str, status: str, title: str) -> str:
    """The evidence label of one log signature: ``new signature: …``, or ``deprecation warning: …``."""
    return f"{status} signature: {title}" if kind == "error" else f"deprecation warning: {title}"


def _url_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"expected a path starting with '/' (the target's URL is prepended), found {value!r}")
    return value


# A path on the target, e.g. "/health" or "/orders?limit=1": the checks prepend the revision's URL.
UrlPath = Annotated[str, AfterValidator(_url_path)]


def _expectations(value: list[str]) -> list[str]:
    parse_all(value)  # one ValueError naming every line that does not parse
    return value


# Expectation lines on a JSON document, e.g. 'status == "healthy"' (core.expect).
Expectations = Annotated[list[str], AfterValidator(_expectations)]


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    # Inputs stay out of error texts: a rejected value may be a credential.
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


class CheckSettings(Strict):
    """Settings every check accepts; each check extends this with its own."""

    enabled: bool = True
    critical: bool = False
    timeout_s: float = Field(60.0, gt=0, le=FUNCTION_TIMEOUT_S)
    category: str | None = None

    @field_validator("category")
    @classmethod
    def _known_category(cls, value: str | None) -> str | None:
        if value is not None and value not in CATEGORIES:
            raise ValueError(f"expected one of {', '.join(CATEGORIES)}, found {value!r}")
        return value
