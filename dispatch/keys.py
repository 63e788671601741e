"""Every Redis key this deployment uses, in one place, under the configured prefix."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Key names derived from one prefix (each test gets its own)."""

    prefix: str

    @property
    def events(self) -> str:
        """The stream the outbox relay publishes committed events to."""
        return f"{self.prefix}events"

    @property
    def unit_positions(self) -> str:
        """GEO set of units' latest positions (member: unit id)."""
        return f"{self.prefix}units:geo"

    @property
    def unit_fixes(self) -> str:
        """Hash of each unit's newest fix, "lat lon epoch-seconds" (member: unit id)."""
        return f"{self.prefix}units:fix"

    @property
    def positions_channel(self) -> str:
        """Pub/sub channel of batched unit positions for consoles (not kept)."""
        return f"{self.prefix}positions"

    def gateway_rate(self, gateway_id: str, second: int) -> str:
        """Counter of one gateway's requests in one second."""
        return f"{self.prefix}rate:{gateway_id}:{second}"

    def available_units(self, agency: str) -> str:
        """GEO set of one agency's available units (a hint; PostgreSQL decides)."""
        return f"{self.prefix}units:available:{agency}"
