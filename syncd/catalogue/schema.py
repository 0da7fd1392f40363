"""The catalogue's schema: `MIGRATIONS[n]` takes a catalogue from version n to n+1.

The version is kept in `PRAGMA user_version`; each migration runs inside one transaction, so an
interrupted upgrade leaves the old version intact.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: list[str] = [
    # 0 -> 1: the initial schema
    """
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        created_at TEXT NOT NULL,
        synced_at TEXT
    );
    CREATE TABLE items (
        pk INTEGER PRIMARY KEY AUTOINCREMENT,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        filename TEXT NOT NULL,              -- '/dir/name.jpg', relative to the dataset folder
        type TEXT NOT NULL DEFAULT 'file',   -- file | link
        size INTEGER,
        mtime REAL,                          -- storage modified time, seconds since the epoch
        etag TEXT,
        md5 TEXT,
        state TEXT NOT NULL DEFAULT 'present',  -- present | missing (gone from storage)
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        system TEXT,                         -- JSON: preprocessing results
        user TEXT                            -- JSON: user metadata
    );
    CREATE UNIQUE INDEX items_path ON items(dataset_id, filename);
    CREATE INDEX items_missing_content ON items(dataset_id, md5, size, etag)
        WHERE state = 'missing';
    CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        item_pk INTEGER NOT NULL,
        kind TEXT NOT NULL DEFAULT 'preprocess',
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | running | done | failed | cancelled
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        claimed_by TEXT,
        claimed_at TEXT
    );
    CREATE INDEX jobs_open ON jobs(state, id) WHERE state IN ('pending', 'running');
    CREATE INDEX jobs_item ON jobs(item_pk);
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        started_at TEXT NOT NULL,
        finished_at TEXT,
        status TEXT NOT NULL,              -- running | ok | failed | interrupted
        listed INTEGER, created INTEGER, updated INTEGER, moved INTEGER,
        deleted INTEGER, unchanged INTEGER, errors INTEGER,
        message TEXT
    );
    CREATE TABLE listing_errors (
        id INTEGER PRIMARY KEY,
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        run_id INTEGER,
        path TEXT NOT NULL,
        reason TEXT NOT NULL,
        at TEXT NOT NULL
    );
    CREATE INDEX listing_errors_dataset ON listing_errors(dataset_id, id);
    """,
    # 1 -> 2: job leases, retry delays, and jobs that outlive their item (artifact cleanup)
    """
    ALTER TABLE jobs ADD COLUMN lease_until REAL;   -- a running job whose lease passed is claimable
    ALTER TABLE jobs ADD COLUMN run_after REAL;     -- a pending job waits until then (retry backoff)
    ALTER TABLE jobs ADD COLUMN dataset_id INTEGER; -- for jobs whose item may be gone (cleanup)
    ALTER TABLE jobs ADD COLUMN payload TEXT;       -- JSON: a cleanup job's driver and keys
    """,
    # 2 -> 3: when an item went missing (the daemon pairs moves only within its move window)
    """
    ALTER TABLE items ADD COLUMN missing_since REAL;  -- seconds since the epoch
    """,
    # 3 -> 4: outgoing webhooks: the configured subscriptions and the outbox (catalogue/outbox.py)
    """
    CREATE TABLE webhooks (
        name TEXT PRIMARY KEY,
        events TEXT NOT NULL                    -- ',item.created,sync.finished,'
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        webhook TEXT NOT NULL,
        event TEXT NOT NULL,                    -- item.created, sync.finished, ...
        payload TEXT NOT NULL,                  -- JSON: the event's data
        created_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | dead
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL DEFAULT 0,        -- seconds since the epoch: not tried before then
        last_error TEXT,
        delivered_at TEXT
    );
    CREATE INDEX outbox_due ON outbox(webhook, next_at) WHERE state = 'pending';
    """,
    # 4 -> 5: the item's other top-level metadata keys (metadata.<key> beside system and user),
    # as the reference SDK's item_metadata sets them
    """
    ALTER TABLE items ADD COLUMN extra TEXT;  -- JSON: {"<key>": value} for metadata.<key>
    """,
    # 5 -> 6: the path an item last moved from (the item.moved webhook event carries it)
    """
    ALTER TABLE items ADD COLUMN moved_from TEXT;
    """,
    # 6 -> 7: datasets whose tar archives are expanded into items (catalogue/archives.py)
    """
    ALTER TABLE datasets ADD COLUMN expand_archives INTEGER NOT NULL DEFAULT 0;
    """,
    # 7 -> 8: paths that arrived on their own and were refused an item by the upload controls
    # (sampling, quotas), with the content the decision was made for (catalogue/arrivals.py);
    # items by creation time, for the quotas' windows
    """
    CREATE TABLE refused (
        dataset_id INTEGER NOT NULL REFERENCES datasets(id),
        filename TEXT NOT NULL,
        reason TEXT NOT NULL,                   -- sampled-out | quota-minute | quota-hour | quota-day
        size INTEGER,
        etag TEXT,
        md5 TEXT,
        decided_at TEXT NOT NULL,
        PRIMARY KEY (dataset_id, filename)
    );
    CREATE INDEX items_created ON items(dataset_id, created_at);
    """,
]



def statements(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


