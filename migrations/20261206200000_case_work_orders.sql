-- A case can be about a visit (a complaint about a work order): the customer names one of their own
-- work orders when filing, or staff set it later. The work order's staff view lists its cases.
alter table cases add column work_order_id uuid references work_orders (id);
create index cases_work_order_idx on cases (work_order_id) where work_order_id is not null;
