-- daily_features: one row per vin and dt (the daily contract). the reference solution's six signals as day
-- means in its units (total_voltage v, total_current a, cell_max_voltage / cell_min_voltage v, max_temperature /
-- min_temperature degc), cell voltage range (max - min of a frame's valid cells) mean / p95 / max over all frames,
-- at rest (|pack_current_a| < 2 a) and under load, probe temperature spread, coverage, the suspect cell and the
-- label source alarm (any frame with general alarm flag bit 10, mask 0x400, set).
-- inputs: frames (frame contract plus partition date dt), dates (dt date), suspect_cells (sql/features/suspect_cells.sql).
-- null cell and probe items (sentinels) are skipped, never read as 0; p95 interpolates linearly between ranks.
with

day_frames as (
    select
        f.vin,
        f.dt,
        f.ts,
        f.pack_voltage_v,
        f.pack_current_a,
        abs(f.pack_current_a) < 2 as at_rest,
        abs(f.pack_current_a) >= 2 as under_load,
        (f.alarm_flags & 1024) <> 0 as cell_consistency_alarm,
        f.cell_mv,
        f.probe_temp_c
    from frames as f
    where f.dt in (select d.dt from dates as d)
),

frame_cells as (
    select
        fr.vin,
        fr.ts,
        cast(c.cell_mv as double) as cell_mv
    from day_frames as fr
    cross join unnest(fr.cell_mv) as c (cell_mv)
    where c.cell_mv is not null
),

frame_cell_extremes as (
    select
        vin,
        ts,
        max(cell_mv) as cell_max_mv,
        min(cell_mv) as cell_min_mv,
        count(*) as valid_cells
    from frame_cells
    group by vin, ts
),

frame_probes as (
    select
        fr.vin,
        fr.ts,
        cast(p.probe_temp_c as double) as probe_temp_c
    from day_frames as fr
    cross join unnest(fr.probe_temp_c) as p (probe_temp_c)
    where p.probe_temp_c is not null
),

frame_probe_extremes as (
    select
        vin,
        ts,
        max(probe_temp_c) as probe_max_c,
        min(probe_temp_c) as probe_min_c,
        count(*) as valid_probes
    from frame_probes
    group by vin, ts
),

frame_stats as (
    select
        fr.vin,
        fr.dt,
        fr.ts,
        fr.pack_voltage_v,
        fr.pack_current_a,
        fr.at_rest,
        fr.under_load,
        fr.cell_consistency_alarm,
        ce.cell_max_mv,
        ce.cell_min_mv,
        ce.valid_cells,
        case when ce.valid_cells >= 2 then ce.cell_max_mv - ce.cell_min_mv end as cell_range_mv,
        pe.probe_max_c,
        pe.probe_min_c,
        pe.valid_probes,
        case when pe.valid_probes >= 2 then pe.probe_max_c - pe.probe_min_c end as probe_spread_c
    from day_frames as fr
    left join frame_cell_extremes as ce on ce.vin = fr.vin and ce.ts = fr.ts
    left join frame_probe_extremes as pe on pe.vin = fr.vin and pe.ts = fr.ts
),

range_samples as (
    select vin, dt, 'all' as regime, cell_range_mv from frame_stats where cell_range_mv is not null
    union all
    select vin, dt, 'rest' as regime, cell_range_mv from frame_stats where cell_range_mv is not null and at_rest
    union all
    select vin, dt, 'load' as regime, cell_range_mv from frame_stats where cell_range_mv is not null and under_load
),

ranked_ranges as (
    select
        range_samples.*,
        row_number() over (partition by vin, dt, regime order by cell_range_mv) as range_rank,
        1 + 0.95 * (count(*) over (partition by vin, dt, regime) - 1) as p95_position
    from range_samples
),

range_summaries as (
    select
        vin,
        dt,
        regime,
        avg(cell_range_mv) as mean_mv,
        max(cell_range_mv) as max_mv,
        sum(
            case
                when range_rank = floor(p95_position) then cell_range_mv * (1 - (p95_position - floor(p95_position)))
                when range_rank = floor(p95_position) + 1 then cell_range_mv * (p95_position - floor(p95_position))
            end
        ) as p95_mv
    from ranked_ranges
    group by vin, dt, regime
),

cell_ranges as (
    select
        vin,
        dt,
        max(case when regime = 'all' then mean_mv end) as cell_range_mean_mv,
        max(case when regime = 'all' then p95_mv end) as cell_range_p95_mv,
        max(case when regime = 'all' then max_mv end) as cell_range_max_mv,
        max(case when regime = 'rest' then mean_mv end) as cell_range_rest_mean_mv,
        max(case when regime = 'rest' then p95_mv end) as cell_range_rest_p95_mv,
        max(case when regime = 'rest' then max_mv end) as cell_range_rest_max_mv,
        max(case when regime = 'load' then mean_mv end) as cell_range_load_mean_mv,
        max(case when regime = 'load' then p95_mv end) as cell_range_load_p95_mv,
        max(case when regime = 'load' then max_mv end) as cell_range_load_max_mv
    from range_summaries
    group by vin, dt
),

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
        avg(probe_spread_c) as probe_spread_mean_c,
        max(probe_spread_c) as probe_spread_max_c,
        max(valid_cells) as cell_count,
        max(valid_probes) as probe_count,
        count(*) as frame_count,
        count(distinct hour(ts)) as hours_covered,
        count(case when at_rest then 1 end) as rest_frames,
        count(case when under_load then 1 end) as load_frames,
        count(case when cell_consistency_alarm then 1 end) as alarm_frames
    from frame_stats
    group by vin, dt
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
    r.cell_range_mean_mv,
    r.cell_range_p95_mv,
    r.cell_range_max_mv,
    r.cell_range_rest_mean_mv,
    r.cell_range_rest_p95_mv,
    r.cell_range_rest_max_mv,
    r.cell_range_load_mean_mv,
    r.cell_range_load_p95_mv,
    r.cell_range_load_max_mv,
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
from day_summaries as s
left join cell_ranges as r on r.vin = s.vin and r.dt = s.dt
left join suspect_cells as sc on sc.vin = s.vin and sc.dt = s.dt
order by s.vin, s.dt
