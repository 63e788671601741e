"""An SMS to 112 as the SMS aggregator posts it (../shared/API.md)."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator


class SmsMessage(BaseModel):
    """One SMS. ``message_id`` and ``from`` (the sender) identify it and are required.

    Everything else is optional and nothing in ``text`` can make the request fail: an
    SMS to 112 is never refused for its content. The sender is ``sender`` in Python
    (``from`` is a keyword) and ``from`` in JSON.
    """

    model_config = ConfigDict(strict=True, extra="allow")

    message_id: str = Field(min_length=1, max_length=200)
    sender: str = Field(alias="from", min_length=1, max_length=64)
    to: str | None = None
    text: str | None = None
    received_at: AwareDatetime | None = None

    @field_validator("message_id", "sender")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value.strip()
