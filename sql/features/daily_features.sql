-- daily_features: one row per vin and dt (the daily contract). the reference solution's six signals as day
-- means in its units (total_voltage v, total_current a, cell_max_voltage / cell_min_voltage v, max_temperature /
-- min_temperature degc), cell voltage range (max - min of a frame's valid cells) mean / p95 / max over all frames,
-- at rest (|pack_current_a| < 2 a) and under load, probe temperature spread, coverage, the suspect cell and the
-- label source alarm (any frame with general alarm flag bit 10, mask 0x400, set).
-- inputs: frames (frame contract plus partition date dt), dates (dt date), suspect_cells (sql/features/suspect_cells.sql).
-- null cell and probe items (sentinels) are skipped, never read as 0; p95 interpolates linearly between ranks.
-- one pass: each frame is reduced to scalars on its own row (no unnest), then one group by per vin and day.
with

-- extremes of each frame's valid items, on the frame's own row. list_max / list_min become trino's array_max /
-- array_min, which agree with duckdb's only on lists without null items (trino returns null when an item is
-- null, duckdb skips it): hence always over filter(list, lambda x: x is not null), which the guard checks.
-- a frame without a valid item has null extremes and a null count (not 0), as if it had no list.
frame_extremes as (
    select
        f.vin,
        f.dt,
        f.ts,
        f.pack_voltage_v,
        f.pack_current_a,
        abs(f.pack_current_a) < 2 as at_rest,
        abs(f.pack_current_a) >= 2 as under_load,
        (f.alarm_flags & 1024) <> 0 as cell_consistency_alarm,
        cast(list_max(filter(f.cell_mv, lambda mv: mv is not null)) as double) as cell_max_mv,
        cast(list_min(filter(f.cell_mv, lambda mv: mv is not null)) as double) as cell_min_mv,
        nullif(cast(cardinality(filter(f.cell_mv, lambda mv: mv is not null)) as bigint), 0) as valid_cells,
        cast(list_max(filter(f.probe_temp_c, lambda c: c is not null)) as double) as probe_max_c,
        cast(list_min(filter(f.probe_temp_c, lambda c: c is not null)) as double) as probe_min_c,
        nullif(cast(cardinality(filter(f.probe_temp_c, lambda c: c is not null)) as bigint), 0) as valid_probes
    from frames as f
    where f.dt in (select d.dt from dates as d)
),

-- a range needs two valid cells, a spread two valid probes
frame_stats as (
    select
        frame_extremes.*,
        case when valid_cells >= 2 then cell_max_mv - cell_min_mv end as cell_range_mv,
        case when valid_probes >= 2 then probe_max_c - probe_min_c end as probe_spread_c
    from frame_extremes
),

-- the day's ranges per regime are collected sorted, for the p95 below (a few thousand values per vin and day).
-- hours_covered counts the distinct clock hours of the day's frames through array_distinct: count(distinct) would
-- make duckdb keep every frame row a second time (the result is the same on both engines: hours are never null).
day_summaries as (
    select
        vin,
        dt,
        avg(pack_voltage_v) as total_voltage,
        avg(pack_current_a) as total_current,
        avg(cell_max_mv) / 1000 as cell_max_voltage,
        avg(cell_min_mv) / 1000 as cell_min_voltage,
        avg(probe_max_c) as max_temperature,
        avg(probe_min_c) as min_temperature,
        avg(cell_range_mv) as cell_range_mean_mv,
        max(cell_range_mv) as cell_range_max_mv,
        avg(case when at_rest then cell_range_mv end) as cell_range_rest_mean_mv,
        max(case when at_rest then cell_range_mv end) as cell_range_rest_max_mv,
        avg(case when under_load then cell_range_mv end) as cell_range_load_mean_mv,
        max(case when under_load then cell_range_mv end) as cell_range_load_max_mv,
        array_sort(array_agg(cell_range_mv) filter (where cell_range_mv is not null)) as ranges_mv,
        array_sort(array_agg(cell_range_mv) filter (where cell_range_mv is not null and at_rest)) as rest_ranges_mv,
        array_sort(array_agg(cell_range_mv) filter (where cell_range_mv is not null and under_load)) as load_ranges_mv,
        avg(probe_spread_c) as probe_spread_mean_c,
        max(probe_spread_c) as probe_spread_max_c,
        max(valid_cells) as cell_count,
        max(valid_probes) as probe_count,
        count(*) as frame_count,
        cast(cardinality(array_distinct(array_agg(hour(ts)))) as bigint) as hours_covered,
        count(case when at_rest then 1 end) as rest_frames,
        count(case when under_load then 1 end) as load_frames,
        count(case when cell_consistency_alarm then 1 end) as alarm_frames
    from frame_stats
    group by vin, dt
),

range_counts as (
    select
        day_summaries.*,
        cast(cardinality(ranges_mv) as bigint) as ranges,
        cast(cardinality(rest_ranges_mv) as bigint) as rest_ranges,
        cast(cardinality(load_ranges_mv) as bigint) as load_ranges
    from day_summaries
),

-- p95 of n sorted values: linear interpolation at position 1 + 0.95 * (n - 1) (as quantile_cont), between items
-- floor(position) and floor(position) + 1 (the last item when floor(position) = n); 1-based subscripts, only
-- taken when n >= 1 (trino fails on an index out of range).
p95_positions as (
    select
        range_counts.*,
        1 + 0.95 * (ranges - 1) as p95_position,
        1 + 0.95 * (rest_ranges - 1) as rest_p95_position,
        1 + 0.95 * (load_ranges - 1) as load_p95_position
    from range_counts
),

p95_items as (
    select
        p95_positions.*,
        cast(floor(p95_position) as bigint) as p95_lower,
        cast(floor(rest_p95_position) as bigint) as rest_p95_lower,
        cast(floor(load_p95_position) as bigint) as load_p95_lower
    from p95_positions
),

cell_ranges as (
    select
        p95_items.*,
        case
            when ranges >= 1 then
                ranges_mv[p95_lower] * (1 - (p95_position - p95_lower))
                + ranges_mv[least(p95_lower + 1, ranges)] * (p95_position - p95_lower)
        end as cell_range_p95_mv,
        case
            when rest_ranges >= 1 then
                rest_ranges_mv[rest_p95_lower] * (1 - (rest_p95_position - rest_p95_lower))
                + rest_ranges_mv[least(rest_p95_lower + 1, rest_ranges)] * (rest_p95_position - rest_p95_lower)
        end as cell_range_rest_p95_mv,
        case
            when load_ranges >= 1 then
                load_ranges_mv[load_p95_lower] * (1 - (load_p95_position - load_p95_lower))
                + load_ranges_mv[least(load_p95_lower + 1, load_ranges)] * (load_p95_position - load_p95_lower)
        end as cell_range_load_p95_mv
    from p95_items
)

select
    s.vin,
    s.dt,
    s.total_voltage,
    s.total_current,
    s.cell_max_voltage,
    s.cell_min_voltage,
    s.max_temperature,
    s.min_temperature,
    s.cell_range_mean_mv,
    s.cell_range_p95_mv,
    s.cell_range_max_mv,
    s.cell_range_rest_mean_mv,
    s.cell_range_rest_p95_mv,
    s.cell_range_rest_max_mv,
    s.cell_range_load_mean_mv,
    s.cell_range_load_p95_mv,
    s.cell_range_load_max_mv,
    s.probe_spread_mean_c,
    s.probe_spread_max_c,
    sc.suspect_cell,
    sc.suspect_cell_dev_mv,
    sc.suspect_cell_dev_rest_mv,
    sc.suspect_cell_dev_load_mv,
    sc.suspect_cell_z,
    sc.suspect_cell_dev_7d_mv,
    sc.suspect_cell_z_7d,
    sc.suspect_cell_days_7d,
    s.cell_count,
    s.probe_count,
    s.frame_count,
    s.hours_covered,
    s.rest_frames,
    s.load_frames,
    s.alarm_frames > 0 as alarm,
    s.alarm_frames
from cell_ranges as s
left join suspect_cells as sc on sc.vin = s.vin and sc.dt = s.dt
order by s.vin, s.dt
