-- Control-room desks: an operator may watch only some zones (NULL: the whole city).
-- Each event records the zone it concerns (its incident's, else its unit's) when it is
-- written, so a desk's console can be filtered live and on replay alike.
ALTER TABLE operators ADD COLUMN zones text[];
ALTER TABLE events ADD COLUMN zone_id text;
