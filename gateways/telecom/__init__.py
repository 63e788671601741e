"""Incoming 112 voice calls from telecom operators (``POST /v1/gateways/telecom/calls``).

``pidf_lo`` parses the PIDF-LO location a call may carry; ``schema`` is the body the
operator posts, ``adapter`` turns it into an IncidentReport, ``router`` is the route.
"""
