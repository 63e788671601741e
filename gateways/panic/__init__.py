"""Panic-button and SOS-app triggers (``POST /v1/gateways/panic``)."""
