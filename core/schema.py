"""Config building blocks shared by core.config and every check's own settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

CATEGORIES = ("Deployment", "Migration", "Stability", "Business", "Testing")
FUNCTION_TIMEOUT_S = 540.0


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
