"""The panic trigger as app backends send it (../shared/API.md)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class PanicUser(BaseModel):
    """Optional profile of the person who pressed the button."""

    model_config = ConfigDict(strict=True, extra="allow")

    name: str | None = None
    phone: str | None = None
    gender: str | None = None


class PanicFix(BaseModel):
    """The phone's GPS fix. Range checks happen later: a bad fix is dropped, not refused."""

    model_config = ConfigDict(strict=True, extra="allow")

    lat: float
    lon: float
    accuracy_m: float | None = None
    time: AwareDatetime | None = None


class PanicTrigger(BaseModel):
    """One SOS trigger. ``trigger_id`` and ``device_id`` identify it and are required."""

    model_config = ConfigDict(strict=True, extra="allow")

    trigger_id: str = Field(min_length=1, max_length=200)
    device_id: str = Field(min_length=1, max_length=200)
    user: PanicUser | None = None
    location: PanicFix | None = None
    category: str | None = Field(default=None, max_length=100)
