"""SHOUT volunteers: citizens registered with the police, alerted to a nearby woman or
child in distress while the police vehicle is on its way (issue 18).

Pure decisions (``policy``, ``decide``, ``approx``, ``views``) are apart from the I/O
(``store`` for PostgreSQL, ``alerter`` for the background loop); the routes are
dispatch/api/volunteers.py and dispatch/api/ws_volunteer.py.
"""
