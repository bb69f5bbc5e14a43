-- cell_daily: one row per vin, dt and cell: the cell's mean deviation (mV) from its frame's median cell
-- voltage, over all frames, at rest (|pack_current_a| < 2 A) and under load (|pack_current_a| >= 2 A).
-- inputs: frames (the frame contract plus its partition date dt), dates (dt date: the days to compute).
-- cell items that are null (the BMS sent a 0xfffe / 0xffff sentinel) are skipped, never read as 0.
with

day_frames as (
    select
        f.vin,
        f.dt,
        f.ts,
        abs(f.pack_current_a) < 2 as at_rest,
        abs(f.pack_current_a) >= 2 as under_load,
        f.cell_mv
    from frames as f
    where f.dt in (select d.dt from dates as d)
),

frame_cells as (
    select
        fr.vin,
        fr.dt,
        fr.ts,
        fr.at_rest,
        fr.under_load,
        c.cell_index,
        cast(c.cell_mv as double) as cell_mv
    from day_frames as fr
    cross join unnest(fr.cell_mv) with ordinality as c (cell_mv, cell_index)
    where c.cell_mv is not null
),

ranked_in_frame as (
    select
        frame_cells.*,
        row_number() over (partition by vin, ts order by cell_mv) as rank_in_frame,
        count(*) over (partition by vin, ts) as cells_in_frame
    from frame_cells
),

-- the median is the mean of the one or two middle ranks: 2 * rank in [n, n + 2] (exact on both engines)
with_frame_median as (
    select
        ranked_in_frame.*,
        avg(case when 2 * rank_in_frame between cells_in_frame and cells_in_frame + 2 then cell_mv end)
            over (partition by vin, ts) as frame_median_mv
    from ranked_in_frame
),

cell_deviations as (
    select
        vin,
        dt,
        cell_index,
        at_rest,
        under_load,
        cell_mv - frame_median_mv as deviation_mv
    from with_frame_median
)

select
    vin,
    dt,
    cast(cell_index as integer) as cell_index,
    avg(deviation_mv) as cell_dev_mv,
    avg(case when at_rest then deviation_mv end) as cell_dev_rest_mv,
    avg(case when under_load then deviation_mv end) as cell_dev_load_mv,
    count(*) as valid_frames
from cell_deviations
group by vin, dt, cell_index
order by vin, dt, cell_index
