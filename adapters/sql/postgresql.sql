-- xregion SQL bridge tables, PostgreSQL. The regional system INSERTs into xregion_outbox and
-- reads xregion_inbox; the bridge writes bus_status/bus_event_id/error and the inbox.
-- The bridge runs this file as it is when it opens the database (the only copy of the DDL;
-- wheels ship it as xregion/bridge/sql/).
CREATE TABLE IF NOT EXISTS xregion_outbox (
    id              BIGSERIAL PRIMARY KEY,              -- publication order
    idempotency_key TEXT NOT NULL UNIQUE,               -- the regional system's own key
    event_type      TEXT NOT NULL,                      -- <family>.<event>, e.g. lead.submitted
    referral_id     TEXT,                               -- NULL opens a referral; the bridge fills it in
    to_region       TEXT,                               -- addressee of an opening (BJ, TJ, HE, ALL)
    data            JSONB NOT NULL,                     -- the event's data (schemas/v1/data/)
    handling        TEXT NOT NULL DEFAULT 'H0',
    answer_by       DATE,                               -- default from the bus configuration
    created_at      TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    bus_status      TEXT NOT NULL DEFAULT 'new',        -- new, submitted, sent, failed, then the referral's state
    bus_event_id    TEXT,                               -- the event's id on the bus
    error           TEXT,                               -- why a row failed (code: message)
    updated_at      TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS xregion_outbox_status ON xregion_outbox (bus_status, id);
CREATE INDEX IF NOT EXISTS xregion_outbox_referral ON xregion_outbox (referral_id);
CREATE TABLE IF NOT EXISTS xregion_inbox (
    event_id     TEXT PRIMARY KEY,                      -- idempotency: each event once
    referral_id  TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    sender       TEXT NOT NULL,
    addressee    TEXT NOT NULL,
    data         JSONB NOT NULL,                        -- personal data opened
    handling     TEXT NOT NULL,
    answer_by    DATE,
    event_time   TIMESTAMPTZ NOT NULL,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
    state_after  TEXT NOT NULL,                         -- the referral's state after this event
    processed_at TIMESTAMPTZ                            -- for the regional system's own use
);
