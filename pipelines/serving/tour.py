"""What `make demo` shows once the servers run: the fleet's top risks, and both kinds of request, sent for real."""

from __future__ import annotations

import math
from datetime import date, timedelta

import httpx
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.features.window_signals import CONTEXT_DAYS
from pipelines.features.windows import inference_windows, select_feature_set
from pipelines.storage import daily_zone, predictions_zone
from pipelines.storage.lake import Lake


def recent_as_of_dates(lake: Lake, days: int = 14) -> list[date]:
    """The last `days` as_of dates the daily zone can feed, ending the day after its newest date (the demo scores
    these, so that a vehicle's probability history and the fleet's predicted alarms have more than one point)."""
    newest = daily_zone.daily_days(lake)[-1]
    return [newest + timedelta(days=1 - back) for back in range(days - 1, -1, -1)]


def latest_predictions(lake: Lake, feature_set: str = "full") -> pa.Table:
    """Each vehicle's newest batch prediction of a feature set, most probable first."""
    table = predictions_zone.read_predictions(lake)
    table = table.filter(pc.and_(pc.equal(table["source"], "batch"), pc.equal(table["feature_set"], feature_set)))
    if table.num_rows == 0:
        return table
    newest = pc.max(table["as_of"])
    table = table.filter(pc.equal(table["as_of"], newest))
    return table.sort_by([("probability", "descending"), ("vin", "ascending")])


def at_risk_lines(lake: Lake, top: int = 10, feature_set: str = "full") -> list[str]:
    """A small table of the vehicles most likely to raise the consistency alarm within 14 days."""
    table = latest_predictions(lake, feature_set)
    if table.num_rows == 0:
        return [f"no batch predictions of the {feature_set} champion yet: run bms_batch_inference"]
    rows = table.slice(0, top).to_pylist()
    lines = [f"top {len(rows)} of {table.num_rows} vehicles at as_of {rows[0]['as_of']} ({feature_set} champion "
             f"{rows[0]['model_version']}, alarm at probability ≥ {rows[0]['threshold']:.3f}):",
             f"  {'vin':<17}  {'probability':>11}  {'alarm':<5}  {'suspect cell':>12}  strongest reason"]
    for row in rows:
        reason = (row["reasons"] or [{}])[0]
        why = f"{reason['feature']} = {_number(reason.get('value'))}" if reason else "—"
        cell = "—" if row["suspect_cell"] is None else str(row["suspect_cell"])
        lines.append(f"  {row['vin']:<17}  {row['probability']:>11.3f}  {'yes' if row['alarm'] else 'no':<5}  "
                     f"{cell:>12}  {why}")
    return lines


def alert_lines(store, as_of: date, days: int = 14, most: int = 10) -> list[str]:
    """The newest `most` alarm episodes that started in the `days` up to as_of (the event store's alerts table)."""
    alerts = store.alerts_between(as_of - timedelta(days=days - 1), as_of)
    if not alerts:
        return [f"no alarm episodes started in the {days} days up to {as_of}"]
    lines = [f"{len(alerts)} alarm episode(s) started in the {days} days up to {as_of} (one alert each, not one a day)"
             + (f"; the newest {most}:" if len(alerts) > most else ":")]
    newest = sorted(alerts, key=lambda a: (a["first_as_of"], a["vin"]))[-most:]
    for alert in newest:
        cell = "—" if alert["suspect_cell"] is None else alert["suspect_cell"]
        sent = f"sent via {alert['channel']}" if alert.get("notified_at") else "not yet delivered"
        lines.append(f"  {alert['vin']}  from {alert['first_as_of']}  probability {alert['probability']:.3f}  "
                     f"suspect cell {cell}  ({sent})")
    return lines


def _number(value: float | None) -> str:
    return "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4g}"


def reference_body(lake: Lake, vin: str, as_of: date) -> dict:
    """The reference solution's request for a vehicle: its 84 daily values, oldest day first, empty when missing."""
    daily = daily_zone.read_daily(lake, as_of - timedelta(days=CONTEXT_DAYS), as_of - timedelta(days=1))
    daily = daily.filter(pc.equal(daily["vin"], vin))
    window = select_feature_set(inference_windows(daily, [as_of]), "signals6")
    if window.num_rows == 0:
        raise ValueError(f"{vin} has no daily rows in the {CONTEXT_DAYS} days before {as_of}")
    values = [window[name][0].as_py() for name in window.column_names[len(window.column_names) - 84:]]
    text = ",".join("" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.6g}" for v in values)
    return {"vin": vin, "date": as_of.isoformat(), "features": text}


def try_the_api(lake: Lake, api_url: str, token: str) -> list[str]:
    """Send one request in the reference's exact format and one by VIN; describe what came back."""
    table = latest_predictions(lake)
    if table.num_rows == 0:
        return ["no batch predictions yet, so no vehicle to ask about: run bms_batch_inference"]
    vin, as_of = table["vin"][0].as_py(), table["as_of"][0].as_py()
    headers = {"Authorization": f"Bearer {token}"}
    lines = []
    requests = [("the reference solution's body, 84 values", reference_body(lake, vin, as_of)),
                ("by VIN, features from the lake", {"vin": vin, "date": as_of.isoformat()})]
    with httpx.Client(base_url=api_url, headers=headers, timeout=30) as client:
        for title, body in requests:
            response = client.post("/v1/predictions", json=body)
            lines.append(f"POST {api_url}/v1/predictions ({title}) → {response.status_code}")
            if response.status_code != 200:
                lines.append(f"  {response.text[:300]}")
                continue
            answer = response.json()
            reasons = ", ".join(r["feature"] for r in answer.get("reasons") or []) or "—"
            lines.append(f"  {answer['vin']} at {answer['date']}: probability {answer['probability']:.3f}, alarm "
                         f"{answer['alarm']}, suspect cell {answer['suspect_cell']}, model {answer['model_version']}, "
                         f"reasons: {reasons}")
    return lines


def wait_for(urls: list[str], seconds: float = 90.0) -> None:
    """Return once every URL answers (any HTTP status below 500 but 503 counts as up); raise after `seconds`."""
    import time

    deadline = time.monotonic() + seconds
    pending = list(urls)
    while pending:
        url = pending[0]
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                pending.pop(0)
                continue
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer within {seconds:.0f} s: see the server's log")
        time.sleep(0.5)
