-- suspect_cells: one row per vin and dt: the cell deviating most from the frame median, ranked by its
-- trailing 7-day mean deviation (dt - 6 ... dt, days with data), so a persistent drift outranks a one-day spike.
-- robust z-score across the pack's cells: (x - median) / (1.4826 * mad); null when mad = 0.
-- inputs: cell_daily (rows of sql/features/cell_daily.sql for the dates and the 6 days before), dates (dt date).
with

today_cells as (
    select
        cd.vin,
        cd.dt,
        cd.cell_index,
        cd.cell_dev_mv,
        cd.cell_dev_rest_mv,
        cd.cell_dev_load_mv
    from cell_daily as cd
    where cd.dt in (select d.dt from dates as d)
),

trailing_cells as (
    select
        t.vin,
        t.dt,
        t.cell_index,
        avg(h.cell_dev_mv) as cell_dev_7d_mv,
        count(*) as days_7d
    from today_cells as t
    join cell_daily as h
        on h.vin = t.vin
        and h.cell_index = t.cell_index
        and date_diff('day', h.dt, t.dt) between 0 and 6
    group by t.vin, t.dt, t.cell_index
),

pack_cells as (
    select
        t.vin,
        t.dt,
        t.cell_index,
        t.cell_dev_mv,
        t.cell_dev_rest_mv,
        t.cell_dev_load_mv,
        tr.cell_dev_7d_mv,
        tr.days_7d
    from today_cells as t
    join trailing_cells as tr
        on tr.vin = t.vin
        and tr.dt = t.dt
        and tr.cell_index = t.cell_index
),

ranked_deviations as (
    select
        pack_cells.*,
        count(*) over (partition by vin, dt) as pack_cell_count,
        row_number() over (partition by vin, dt order by cell_dev_mv) as rank_today,
        row_number() over (partition by vin, dt order by cell_dev_7d_mv) as rank_7d
    from pack_cells
),

-- the median is the mean of the one or two middle ranks: 2 * rank in [n, n + 2]
pack_medians as (
    select
        ranked_deviations.*,
        avg(case when 2 * rank_today between pack_cell_count and pack_cell_count + 2 then cell_dev_mv end)
            over (partition by vin, dt) as median_today_mv,
        avg(case when 2 * rank_7d between pack_cell_count and pack_cell_count + 2 then cell_dev_7d_mv end)
            over (partition by vin, dt) as median_7d_mv
    from ranked_deviations
),

absolute_deviations as (
    select
        pack_medians.*,
        abs(cell_dev_mv - median_today_mv) as abs_dev_today_mv,
        abs(cell_dev_7d_mv - median_7d_mv) as abs_dev_7d_mv
    from pack_medians
),

ranked_absolute_deviations as (
    select
        absolute_deviations.*,
        row_number() over (partition by vin, dt order by abs_dev_today_mv) as abs_rank_today,
        row_number() over (partition by vin, dt order by abs_dev_7d_mv) as abs_rank_7d
    from absolute_deviations
),

pack_mads as (
    select
        ranked_absolute_deviations.*,
        avg(case when 2 * abs_rank_today between pack_cell_count and pack_cell_count + 2 then abs_dev_today_mv end)
            over (partition by vin, dt) as mad_today_mv,
        avg(case when 2 * abs_rank_7d between pack_cell_count and pack_cell_count + 2 then abs_dev_7d_mv end)
            over (partition by vin, dt) as mad_7d_mv
    from ranked_absolute_deviations
),

scored_cells as (
    select
        pack_mads.*,
        (cell_dev_mv - median_today_mv) / (1.4826 * nullif(mad_today_mv, 0)) as z_today,
        (cell_dev_7d_mv - median_7d_mv) / (1.4826 * nullif(mad_7d_mv, 0)) as z_7d,
        row_number() over (partition by vin, dt order by abs(cell_dev_7d_mv) desc, cell_index) as suspect_rank
    from pack_mads
)

select
    vin,
    dt,
    cell_index as suspect_cell,
    cell_dev_mv as suspect_cell_dev_mv,
    cell_dev_rest_mv as suspect_cell_dev_rest_mv,
    cell_dev_load_mv as suspect_cell_dev_load_mv,
    z_today as suspect_cell_z,
    cell_dev_7d_mv as suspect_cell_dev_7d_mv,
    z_7d as suspect_cell_z_7d,
    days_7d as suspect_cell_days_7d
from scored_cells
where suspect_rank = 1
order by vin, dt
