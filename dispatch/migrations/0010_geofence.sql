-- Whether a unit on patrol is outside its home zone (for enter/exit alerts).
ALTER TABLE units ADD COLUMN outside_home boolean NOT NULL DEFAULT false;
