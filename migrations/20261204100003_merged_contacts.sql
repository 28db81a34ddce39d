-- Staff merge an unverified contact (from a chat, the web form or the mailbox) into the customer
-- they turned out to be: the contact's cases, chats and files move to the customer, and the
-- contact stays, marked, for the record.
alter table customers
    add column merged_into uuid references customers (id),
    add column merged_at timestamptz,
    add column merged_by uuid references users (id),
    add constraint customers_merged_unverified check (merged_into is null or not verified),
    add constraint customers_merged_whole check ((merged_into is null) = (merged_at is null));
