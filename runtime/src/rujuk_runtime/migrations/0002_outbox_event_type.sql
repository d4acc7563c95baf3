-- The event type beside each staged event, for metrics and for ops reading the table.
ALTER TABLE outbox ADD COLUMN event_type text NOT NULL DEFAULT 'unknown';
ALTER TABLE outbox ALTER COLUMN event_type DROP DEFAULT;
