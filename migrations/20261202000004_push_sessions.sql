-- A push subscription belongs to the session that registered it: logging out (or the session being
-- deleted) removes it, so a device that changes hands stops receiving the previous user's
-- notifications. Subscriptions made before this migration have no session and stay until removed.

alter table push_subscriptions
    add column session_hash bytea references sessions (token_hash) on delete cascade;
create index push_subscriptions_session_idx on push_subscriptions (session_hash);

create function push_subscriptions_end_with_session() returns trigger
language plpgsql as $$
begin
    delete from push_subscriptions where session_hash = new.token_hash;
    return null;
end
$$;

create trigger sessions_revoked_ends_push_subscriptions
    after update of revoked_at on sessions
    for each row when (old.revoked_at is null and new.revoked_at is not null)
    execute function push_subscriptions_end_with_session();
