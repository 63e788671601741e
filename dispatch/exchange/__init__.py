"""Incidents that travel: EIDO export and import (NENA-STA-021), CAP 1.2 public alerts,
and hand-offs to other agencies' CADs. Pure builders here; I/O in their own modules."""
