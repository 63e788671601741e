"""Vehicle panic buttons (AIS-140) from a vehicle-tracking backend (``POST /v1/gateways/vehicle``).

A JSON alert, or the device's own packet as text (``gateways.vehicle.packet``). An
emergency button becomes a ``vehicle_panic`` incident; a tamper alert waits for an
operator; login, health and tracking packets make no incident, but a fix of a vehicle
with an open incident moves that incident.
"""
