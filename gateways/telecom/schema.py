"""An incoming 112 call as the telecom operator's gateway posts it (../shared/API.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class CallLocation(BaseModel):
    """The network's location of the caller (LBS): a point and its uncertainty.

    Range checks happen later: an impossible fix is dropped with a warning, not refused.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    lat: float
    lon: float
    radius_m: float | None = None
    method: str | None = Field(default=None, max_length=100)
    time: AwareDatetime | None = None


class TelecomCall(BaseModel):
    """One 112 call. ``call_id`` and ``caller`` identify it and are required.

    ``caller`` should be E.164; another non-blank form is kept with a warning, since a
    call to 112 is never refused for the format of its number. ``pidf_lo`` is the
    PIDF-LO XML the network sent, parsed later: a broken document only loses its
    location. ``call_state`` tells operators whether the caller could talk; ``notes``
    (what the caller said) is read for the type of emergency it suggests.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    call_id: str = Field(min_length=1, max_length=200)
    caller: str = Field(min_length=1, max_length=64)
    location: CallLocation | None = None
    pidf_lo: str | None = None
    tsp: str | None = Field(default=None, max_length=100)
    started_at: AwareDatetime | None = None
    call_state: Literal["answered", "silent", "dropped"] | None = None
    notes: str | None = Field(
        default=None,
        max_length=4000,
        description="What the caller said, as the call-taker or a transcript noted it",
    )

    @field_validator("call_id", "caller")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()
