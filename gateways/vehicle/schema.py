"""A vehicle alert as a tracking backend posts it as JSON (docs/gateways.md)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class VehicleFix(BaseModel):
    """The vehicle's GPS fix. Range checks happen later: a bad fix is dropped, not refused."""

    model_config = ConfigDict(strict=True, extra="allow")

    lat: float
    lon: float
    accuracy_m: float | None = None


class VehicleAlert(BaseModel):
    """One alert. ``alert_id`` (the backend's id of this alert) and ``imei`` (the
    tracking device's) identify it and are required; everything else is optional."""

    model_config = ConfigDict(strict=True, extra="allow")

    alert_id: str = Field(min_length=1, max_length=200)
    imei: str = Field(min_length=1, max_length=32, description="The device's IMEI (15 digits)")
    registration: str | None = Field(
        default=None, max_length=32, description="The vehicle's registration (MH12AB1234)"
    )
    operator: str | None = Field(
        default=None, max_length=200, description="The vehicle's operator or owner"
    )
    vehicle_type: str | None = Field(
        default=None, max_length=50, description="bus, taxi, cab, auto, truck, ..."
    )
    alert_type: str | None = Field(
        default=None,
        max_length=50,
        description="emergency, emergency_off, tamper (wire_cut), login, health or tracking;"
        " without it, the raw packet's type is used",
    )
    location: VehicleFix | None = None
    speed_kmh: float | None = None
    heading_deg: float | None = None
    time: AwareDatetime | None = Field(default=None, description="When the fix was taken")
    raw_packet: str | None = Field(
        default=None, max_length=4000, description="The device's AIS-140 packet as it came"
    )

    @field_validator("alert_id", "imei")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()
