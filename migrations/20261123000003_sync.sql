-- Offline sync: the Automerge documents that the apps sync over /api/v1/sync, who may read or write
-- each, and their durable content. A document's content is its snapshot (if any) plus the
-- incremental change rows stored after it; compaction folds change rows into the snapshot in the
-- transaction that deletes them.

create table sync_documents (
    -- bs58check of 16 bytes, as automerge-repo writes it (the URL is `automerge:<id>`).
    document_id text primary key check (document_id ~ '^[1-9A-HJ-NP-Za-km-z]{1,64}$'),
    kind text not null check (kind in ('field_report', 'customer_outbox', 'customer_inbox')),
    created_at timestamptz not null default now()
);

-- No row, no access: the server answers `doc-unavailable` exactly as for a document that does not exist.
create table sync_document_access (
    document_id text not null references sync_documents (document_id),
    user_id uuid not null references users (id),
    mode text not null check (mode in ('read', 'write')),
    granted_at timestamptz not null default now(),
    primary key (document_id, user_id)
);
create index sync_document_access_user_idx on sync_document_access (user_id);

-- Each row is what Automerge's `save_after` wrote for one batch of new changes. Automerge loads
-- changes in any order, so `seq` only tells a compaction which rows it folded.
create table sync_changes (
    seq bigint generated always as identity primary key,
    document_id text not null references sync_documents (document_id),
    data bytea not null check (length(data) > 0),
    created_at timestamptz not null default now()
);
create index sync_changes_document_idx on sync_changes (document_id, seq);

-- A whole saved document (Automerge `save`): the initial state, or the result of a compaction.
create table sync_snapshots (
    document_id text primary key references sync_documents (document_id),
    data bytea not null check (length(data) > 0),
    updated_at timestamptz not null default now()
);

-- The storage id the server advertises in `peer`: automerge-repo clients key the sync state they
-- keep for us by it, so it belongs to the database and every server process on it shares it.
create table sync_storage (
    singleton boolean primary key default true check (singleton),
    storage_id uuid not null default gen_random_uuid()
);
insert into sync_storage default values;
