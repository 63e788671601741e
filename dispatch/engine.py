"""Choosing a unit: the ranking now lives in dispatch.core.rank (and its snapshot types in
dispatch.core.facts); these names stay for the simulator, benches and settings that use
them."""

from dispatch.core.facts import LiveFix, Need, TravelModel, UnitSnapshot
from dispatch.core.rank import Candidate, Policy, Tier, closest_idle, is_fresh, with_live_fix

__all__ = [
    "Candidate",
    "LiveFix",
    "Need",
    "Policy",
    "Tier",
    "TravelModel",
    "UnitSnapshot",
    "closest_idle",
    "is_fresh",
    "with_live_fix",
]
