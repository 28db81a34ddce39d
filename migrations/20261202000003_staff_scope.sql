-- Who works which case (README, "Who works which case"): the quality director every case;
-- collaborators, process leaders and technicians the cases of the processes they belong to or
-- lead, and the cases assigned to them; admins (who administer) and customers none.
--
-- Every staff query on cases says it the same way:
--     from cases c cross join staff_scope($staff) s where works_case(s, c.process_code, c.assignee_id)
-- `staff_scope` is read once per query; `works_case` has no subquery, so PostgreSQL inlines it
-- into a plain condition per row (a function that looked memberships up per row cost ~35 times
-- the queue itself).
create type case_scope as (
    -- Null for whoever works no case, so no assignment matches them.
    staff_id uuid,
    every_case boolean,
    processes text[]
);

create function staff_scope(staff uuid) returns case_scope language sql stable as $$
    select coalesce(
        (select row(
                    u.id,
                    u.role = 'quality_director',
                    array(select m.process_code from process_members m where m.user_id = u.id
                          union
                          select p.code from processes p where p.leader_id = u.id))::case_scope
         from users u
         where u.id = staff and u.active
           and u.role in ('quality_director', 'collaborator', 'process_leader', 'technician')),
        row(null, false, '{}')::case_scope)
$$;

create function works_case(scope case_scope, case_process text, case_assignee uuid)
returns boolean language sql immutable as $$
    select coalesce((scope).every_case
                    or case_process = any((scope).processes)
                    or case_assignee = (scope).staff_id, false)
$$;
