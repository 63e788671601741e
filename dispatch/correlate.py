"""Where the correlation rules used to live: they are pure, so they are in
dispatch.core.correlate now; these names stay for the gateways and routes that use them."""

from dispatch.core.correlate import (
    PERSONAL_TYPES,
    CorrelationPolicy,
    is_better,
    may_join_nearby,
    sender_window_applies,
    tel_key,
)

__all__ = [
    "PERSONAL_TYPES",
    "CorrelationPolicy",
    "is_better",
    "may_join_nearby",
    "sender_window_applies",
    "tel_key",
]
