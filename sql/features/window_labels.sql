-- window_labels: one row per vin and as_of date with any daily row in the horizon as_of ... as_of + 13.
-- label: 1 if the cell consistency alarm was set on any of those days, 0 if not on the days with data;
-- label_days counts those days (an incomplete horizon can miss an alarm). vehicles with no horizon day get no row.
-- inputs: daily (rows of sql/features/daily_features.sql), as_of_dates (as_of date).
with

horizon_day_rows as (
    select
        d.vin,
        a.as_of,
        d.alarm
    from daily as d
    join as_of_dates as a on date_diff('day', d.dt, a.as_of) between -13 and 0
),

labels as (
    select
        h.vin,
        h.as_of,
        max(case when h.alarm then 1 else 0 end) as label,
        count(*) as label_days
    from horizon_day_rows as h
    group by h.vin, h.as_of
)

select
    l.vin,
    l.as_of,
    l.label,
    l.label_days
from labels as l
order by l.vin, l.as_of
