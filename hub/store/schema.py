"""The hub database's schema, one migration per version (hub/store/database.py applies them)."""

SCHEMA_VERSION = 6

SCHEMA_V1 = """
CREATE TABLE counters (
    device_id    TEXT PRIMARY KEY,
    last_counter INTEGER NOT NULL CHECK (last_counter BETWEEN 0 AND 4294967295),
    last_event   INTEGER NOT NULL CHECK (last_event IN (0, 1)),  -- did that frame carry an event
    updated_at   REAL NOT NULL
);
CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,  -- arrival order, never reused
    event_id        TEXT NOT NULL UNIQUE,
    source          TEXT NOT NULL,                      -- device id, or hub id for hub events
    type            TEXT NOT NULL,
    urgent          INTEGER NOT NULL CHECK (urgent IN (0, 1)),
    body            BLOB NOT NULL,
    created_at      REAL NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error      TEXT
);
CREATE INDEX outbox_by_source ON outbox (source, urgent, seq);
CREATE INDEX outbox_by_time ON outbox (next_attempt_at);
CREATE TABLE dead_letter (
    event_id   TEXT PRIMARY KEY,
    type       TEXT NOT NULL,
    body       BLOB NOT NULL,
    created_at REAL NOT NULL,
    attempts   INTEGER NOT NULL,
    died_at    REAL NOT NULL,
    reason     TEXT NOT NULL
);
CREATE TABLE hub_seq (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
CREATE TABLE devices_seen (
    device_id     TEXT PRIMARY KEY,
    last_heard_at REAL NOT NULL,
    last_counter  INTEGER NOT NULL,
    battery       INTEGER,
    rssi          INTEGER
);
"""
# v2: the rules (hub/rules). An alarm is open while cleared_at is NULL; at most one
# open alarm per kind and device.
SCHEMA_V2 = """
CREATE TABLE alarms (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT NOT NULL,            -- toilet_overdue, door_inactive, device_offline, battery_low
    subject         TEXT NOT NULL,            -- the device id it is about
    raised_at       REAL NOT NULL,
    raised_event    TEXT NOT NULL UNIQUE,     -- the hub event that raised it
    acknowledged_at REAL,                     -- when the platform stored that event
    cleared_at      REAL,
    cleared_event   TEXT                      -- the event that ended it (hub or device event), if any
);
CREATE UNIQUE INDEX alarms_open ON alarms (kind, subject) WHERE cleared_at IS NULL;
CREATE TABLE rule_state (
    rule       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    state      TEXT NOT NULL,                 -- JSON, as the rule machine gives it
    updated_at REAL NOT NULL,
    PRIMARY KEY (rule, subject)
);
"""
# v3: the relay and acks (hub/uplink.py, hub/acks.py). An ack is owed while kind > written
# and expires_at has not passed; a row is kept (written) until it expires, so a late
# lower kind can never be owed again after a higher one was written.
SCHEMA_V3 = """
CREATE TABLE owed_acks (
    device_id  TEXT NOT NULL,
    counter    INTEGER NOT NULL,
    kind       INTEGER NOT NULL CHECK (kind IN (2, 3)),   -- the highest kind owed
    written    INTEGER NOT NULL DEFAULT 0,                -- the highest kind written to the device
    event_id   TEXT NOT NULL,
    owed_since REAL NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (device_id, counter)
);
CREATE TABLE awaiting_operator (
    event_id     TEXT PRIMARY KEY,
    device_id    TEXT NOT NULL,
    counter      INTEGER NOT NULL,
    delivered_at REAL NOT NULL,
    until        REAL NOT NULL
);
CREATE TABLE hub_settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
-- due()'s "no older item of the source still waiting" check, without scanning a backlog
-- (3,000 waiting events: 40 ms a query without it, 1 ms with it).
CREATE INDEX outbox_waiting ON outbox (source, urgent, next_attempt_at, seq);
"""
# v4: one source's events go in order across urgencies (hub/store/outbox.py `due`).
SCHEMA_V4 = """
CREATE INDEX outbox_source_order ON outbox (source, seq, next_attempt_at);
"""
# v5: acks confirmed by the device (SPEC 1.7). `written` now means the highest kind the device
# has confirmed in a receipt; sent_number/sent_kind are the last write of the row, awaiting it.
# ack_number is the hub's ack number, in every ack's nonce, never used twice (started at the
# clock, as hub_seq: a database remade does not go back below numbers devices have accepted).
SCHEMA_V5 = """
ALTER TABLE owed_acks ADD COLUMN sent_number INTEGER;
ALTER TABLE owed_acks ADD COLUMN sent_kind INTEGER NOT NULL DEFAULT 0;
CREATE INDEX owed_acks_sent ON owed_acks (device_id, sent_number);
CREATE TABLE ack_number (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL CHECK (value BETWEEN 0 AND 4294967295)
);
"""
# v6: every ack a device is due goes in one connection; sent_link is the number of that
# connection's first ack, so a receipt naming the last confirms those before it (they reached
# the same device, in order, over the same link).
SCHEMA_V6 = """
ALTER TABLE owed_acks ADD COLUMN sent_link INTEGER;
"""
# Version n of the schema is reached by running MIGRATIONS[n] on version n-1.
MIGRATIONS: dict[int, str] = {1: SCHEMA_V1, 2: SCHEMA_V2, 3: SCHEMA_V3, 4: SCHEMA_V4, 5: SCHEMA_V5, 6: SCHEMA_V6}
