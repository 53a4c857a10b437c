-- Presence in media rooms, from LiveKit's webhooks (PostgreSQL). Keep in step with ../sqlite/9_media.sql.

-- One stretch of a participant in a room: joined, and left (NULL while still there). A rejoin shortly after
-- leaving (a reconnect) reopens the last segment instead of starting a new one.
CREATE TABLE media_segments (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    room      TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    source    TEXT NOT NULL,                  -- livekit
    joined_at TEXT NOT NULL,
    left_at   TEXT
);
CREATE INDEX media_segments_room ON media_segments (room, user_id, id);
