-- Blobs: photos, signatures and PQRS attachments, uploaded on their own and referenced by the
-- SHA-256 of their bytes. Content-addressed, so a blob is stored once however often it is sent,
-- and never changes.

create table blobs (
    sha256 text primary key check (sha256 ~ '^[0-9a-f]{64}$'),
    content_type text not null check (content_type in
        ('image/jpeg', 'image/png', 'image/webp', 'image/heic', 'image/heif', 'application/pdf')),
    size bigint not null check (size = length(data)),
    data bytea not null,
    -- Whoever stored the bytes first; everyone who sent them is in blob_uploads.
    uploaded_by uuid not null references users (id),
    created_at timestamptz not null default now()
);

-- Each user who uploaded a blob may read it and attach it: someone holding the bytes learns
-- nothing from being allowed to download them.
create table blob_uploads (
    sha256 text not null references blobs (sha256),
    user_id uuid not null references users (id),
    uploaded_at timestamptz not null default now(),
    primary key (sha256, user_id)
);

-- Blobs attached to a case: to one of its messages, or to the case itself (message_id null, e.g.
-- attached when an offline draft is filed).
create table case_attachments (
    id bigint generated always as identity primary key,
    case_id uuid not null references cases (id),
    message_id uuid references case_messages (id),
    sha256 text not null references blobs (sha256),
    attached_by uuid not null references users (id),
    attached_at timestamptz not null default now(),
    constraint case_attachments_once unique nulls not distinct (case_id, message_id, sha256)
);
create index case_attachments_sha256_idx on case_attachments (sha256);

-- Blobs a sync document (a field report's photos and signature) refers to, filled by its
-- projection. Whoever may open the document may download them. No foreign key to blobs: a device
-- may sync the document before its upload of the photo arrives.
create table document_blobs (
    document_id text not null references sync_documents (document_id),
    sha256 text not null check (sha256 ~ '^[0-9a-f]{64}$'),
    primary key (document_id, sha256)
);
create index document_blobs_sha256_idx on document_blobs (sha256);
