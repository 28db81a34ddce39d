-- Every process keeps a copy of the terms the clocks are computed from (holiday overrides,
-- working hours, warning percentages, legal terms per case type) and drops it when told that
-- they changed. The triggers tell, whoever changes them: the admin command, the API or psql.
create function notify_terms_changed() returns trigger
language plpgsql as $$
begin
    perform pg_notify('atiende_terms', tg_table_name);
    return null;
end;
$$;

do $$
declare
    t text;
begin
    foreach t in array array['holiday_overrides', 'working_hours', 'deadline_settings', 'legal_terms'] loop
        execute format(
            'create trigger %I after insert or update or delete or truncate on %I
             for each statement execute function notify_terms_changed()',
            t || '_changed', t);
    end loop;
end;
$$;
