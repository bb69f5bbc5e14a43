-- cell_daily: one row per vin, dt and cell: the cell's mean deviation (mV) from its frame's median cell
-- voltage, over all frames, at rest (|pack_current_a| < 2 A) and under load (|pack_current_a| >= 2 A).
-- inputs: frames (the frame contract plus its partition date dt), dates (dt date: the days to compute).
-- cell items that are null (the BMS sent a 0xfffe / 0xffff sentinel) are skipped, never read as 0: they are left
-- out of the frame median and get no deviation. a frame without a valid cell has no median and adds nothing.
-- the median comes from each frame's own sorted list of valid cells, so no sort or window runs over unnested rows.
with

-- filter(list, lambda x: x is not null) is the one lambda the guard allows (trino: filter(list, x -> not x is null));
-- sorting only the valid items means neither engine's null placement matters.
day_frames as (
    select
        f.vin,
        f.dt,
        abs(f.pack_current_a) < 2 as at_rest,
        abs(f.pack_current_a) >= 2 as under_load,
        f.cell_mv,
        array_sort(filter(f.cell_mv, lambda mv: mv is not null)) as valid_sorted_mv
    from frames as f
    where f.dt in (select d.dt from dates as d)
),

frame_valid_counts as (
    select
        day_frames.*,
        cast(cardinality(valid_sorted_mv) as bigint) as valid_cells
    from day_frames
),

-- median of n sorted valid cells: the mean of items floor((n + 1) / 2) and floor(n / 2) + 1 (the same item when n
-- is odd); 1-based subscripts on both engines, only taken when n >= 1 (trino fails on an index out of range).
-- cell_indexes (1 ... cardinality, trino: sequence) numbers the cells; unnesting that column is how each cell keeps its
-- 1-based index (duckdb runs "unnest ... with ordinality" as a correlated join, over 10x slower). the list is never
-- empty here (valid_cells >= 1): generate_series(1, 0) is empty, but trino's sequence(1, 0) is [1, 0].
frame_medians as (
    select
        vin,
        dt,
        at_rest,
        under_load,
        cell_mv,
        generate_series(1, cast(cardinality(cell_mv) as bigint)) as cell_indexes,
        case
            when valid_cells >= 1 then (
                cast(valid_sorted_mv[cast(floor((valid_cells + 1) / 2.0) as bigint)] as double)
                + cast(valid_sorted_mv[cast(floor(valid_cells / 2.0) as bigint) + 1] as double)
            ) / 2
        end as frame_median_mv
    from frame_valid_counts
    where valid_cells >= 1
),

cell_deviations as (
    select
        fm.vin,
        fm.dt,
        c.cell_index,
        fm.at_rest,
        fm.under_load,
        fm.cell_mv[c.cell_index] - fm.frame_median_mv as deviation_mv
    from frame_medians as fm
    cross join unnest(fm.cell_indexes) as c (cell_index)
)

select
    vin,
    dt,
    cast(cell_index as integer) as cell_index,
    avg(deviation_mv) as cell_dev_mv,
    avg(case when at_rest then deviation_mv end) as cell_dev_rest_mv,
    avg(case when under_load then deviation_mv end) as cell_dev_load_mv,
    count(deviation_mv) as valid_frames
from cell_deviations
group by vin, dt, cell_index
having count(deviation_mv) > 0
order by vin, dt, cell_index
