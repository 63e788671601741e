"""Pure dispatch decisions: a snapshot of facts in, what to do out.

Nothing here reads PostgreSQL, Redis, the network or a clock (tests/test_core_purity.py
checks): the shell (dispatch/offers.py, intake.py, queue.py, expiry.py) reads the
snapshot, calls these, and applies the decision.

- ``place``: an incident's zone, the other zones it may be in, why it has none.
- ``facts``: the snapshot types (incident, units with live positions, needs, rules).
- ``rank``: who may serve a need (free, agency, not refused, fresh) and in which order.
- ``plans``: slot order, pre-emption, and the wait/hold/escalate verdict.
- ``decide``: fill an incident's plan from one snapshot.
- ``lifecycle``: unit and offer transitions, applied or refused with a typed reason.
- ``correlate``: which open incident a report joins, or a new one.
"""
