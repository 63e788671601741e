-- Silent and dropped calls: most calls to 112 are blank; they become callback tasks.
ALTER TABLE reports ADD COLUMN silent boolean NOT NULL DEFAULT false;
CREATE INDEX reports_silent_recent ON reports (received_at) WHERE silent;
