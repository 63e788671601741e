-- Where the engine last told a unit to wait between jobs (dispatch/posts.py); NULL when
-- the crew keeps its own patrol.
ALTER TABLE units
    ADD COLUMN post_lat double precision,
    ADD COLUMN post_lon double precision,
    ADD CONSTRAINT units_post_both CHECK ((post_lat IS NULL) = (post_lon IS NULL));
