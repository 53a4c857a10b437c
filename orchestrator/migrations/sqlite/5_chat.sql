-- Chat persistence (SQLite). Keep in step with ../postgres/5_chat.sql.
-- Written in batches behind the real-time fan-out; `room_offset` is the message's offset in its room.

CREATE TABLE chat_messages (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id   TEXT NOT NULL,
    room        TEXT NOT NULL,
    room_offset BIGINT NOT NULL,
    user_id     TEXT NOT NULL,
    user_name   TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX chat_messages_room ON chat_messages (room, id);
