-- A phone number typed on the web form proves nothing: it is kept to reach the person, but never
-- links a chat to their record (`contacts::find_by_phone` looks only at vouched numbers: the
-- ones a platform, the app or staff gave).
alter table customers add column phone_vouched boolean not null default true;
