-- fleet_daily: one row per dt for analysts and dashboards: vehicles reporting, frames, vehicles in alarm, the
-- fleet's cell voltage range (mean and p95 across vehicles of each vehicle's day mean, max of the day maxima) and
-- vehicles whose suspect cell is an outlier (|robust z of the 7-day deviation| >= 3.5, the usual modified z cut-off).
-- inputs: daily (rows of sql/features/daily_features.sql). p95 interpolates linearly between ranks.
with

vehicle_days as (
    select
        d.dt,
        d.vin,
        d.frame_count,
        d.hours_covered,
        d.alarm,
        d.alarm_frames,
        d.cell_range_mean_mv,
        d.cell_range_max_mv,
        d.probe_spread_mean_c,
        d.suspect_cell_z_7d
    from daily as d
),

ranked_ranges as (
    select
        v.dt,
        v.cell_range_mean_mv,
        row_number() over (partition by v.dt order by v.cell_range_mean_mv) as range_rank,
        1 + 0.95 * (count(*) over (partition by v.dt) - 1) as p95_position
    from vehicle_days as v
    where v.cell_range_mean_mv is not null
),

range_p95s as (
    select
        dt,
        sum(
            case
                when range_rank = floor(p95_position) then cell_range_mean_mv * (1 - (p95_position - floor(p95_position)))
                when range_rank = floor(p95_position) + 1 then cell_range_mean_mv * (p95_position - floor(p95_position))
            end
        ) as cell_range_p95_mv
    from ranked_ranges
    group by dt
),

fleet_days as (
    select
        dt,
        count(*) as vehicles_reporting,
        cast(sum(frame_count) as bigint) as frames,
        avg(hours_covered) as hours_covered_mean,
        count(case when alarm then 1 end) as vehicles_in_alarm,
        cast(sum(alarm_frames) as bigint) as alarm_frames,
        avg(cell_range_mean_mv) as cell_range_mean_mv,
        max(cell_range_max_mv) as cell_range_max_mv,
        avg(probe_spread_mean_c) as probe_spread_mean_c,
        count(case when abs(suspect_cell_z_7d) >= 3.5 then 1 end) as vehicles_with_outlier_cell
    from vehicle_days
    group by dt
)

select
    f.dt,
    f.vehicles_reporting,
    f.frames,
    f.hours_covered_mean,
    f.vehicles_in_alarm,
    cast(f.vehicles_in_alarm as double) / f.vehicles_reporting as alarm_share,
    f.alarm_frames,
    f.cell_range_mean_mv,
    p.cell_range_p95_mv,
    f.cell_range_max_mv,
    f.probe_spread_mean_c,
    f.vehicles_with_outlier_cell
from fleet_days as f
left join range_p95s as p on p.dt = f.dt
order by f.dt
