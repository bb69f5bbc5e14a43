"""The fleet dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright) over a demo-like run.

A small simulated fleet (12 vehicles × 64 days, half the packs faulty: the fewest days an honest split accepts) goes
through the project's own steps: frames into the lake's frames zone, daily features, training with the reference
recipe beside it, batch inference for the last 15 as_of dates, alerts. The API serves it on loopback; the browser
signs in with the token, opens the fleet, a vehicle and the model card, and must see charts drawn from that data
without a single console error. Screenshots go to the lake's `reports/dashboard/`, beside the Data Docs.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from datetime import date, timedelta
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from pipelines.config import Secret, load_settings
from pipelines.features.pipeline import compute_daily
from pipelines.ingest.dedup import partition_key
from pipelines.schema import FRAME_PARQUET_OPTIONS
from pipelines.serving.alerts import Notifier, raise_alerts
from pipelines.serving.api import create_app
from pipelines.serving.batch_inference import score_dates
from pipelines.simulate import SimulationParams, build_fleet, simulate_vehicle_frames
from pipelines.storage import daily_zone
from pipelines.storage.event_store import EventStore
from pipelines.storage.lake import Lake
from pipelines.storage.predictions_zone import read_predictions
from pipelines.training.pipeline import TrainingRequest, train_and_register

from ..live_server import live_server

pytestmark = pytest.mark.slow
TOKEN = "browser-token-0123456789abcdef"
VEHICLES, DAYS, START = 12, 64, date(2026, 1, 1)
SCORED_DAYS = 15
SCREENSHOTS = "reports/dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def write_frames(lake: Lake, params: SimulationParams) -> int:
    """The simulated fleet's frames in the frames zone, one object per date (what ingest writes for clean uploads)."""
    frames = pa.concat_tables([simulate_vehicle_frames(params, spec) for spec in build_fleet(params)])
    days = pc.cast(pc.floor_temporal(frames["ts"], unit="day"), pa.date32())
    for day in sorted(set(days.to_pylist())):
        lake.write_parquet(partition_key(day.isoformat(), "simulator"),
                           frames.filter(pc.equal(days, pa.scalar(day, pa.date32()))), FRAME_PARQUET_OPTIONS)
    return frames.num_rows


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> SimpleNamespace:
    """The demo's steps on a small fleet, then the API with the dashboard on a free loopback port."""
    started = time.perf_counter()
    home = tmp_path_factory.mktemp("dashboard-demo")
    lake = Lake((home / "lake").as_uri())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CELLGUARD_HOME", str(home))
        env.delenv("CELLGUARD_PROMOTION_AP_MARGIN", raising=False)
        env.delenv("CELLGUARD_ALERT_WEBHOOK", raising=False)
        params = SimulationParams(vehicles=VEHICLES, days=DAYS, start_date=START, interval_s=30, seed=5,
                                  fault_fraction=0.5, file_format="parquet")
        frames = write_frames(lake, params)
        compute_daily(lake=lake)
        train_and_register(TrainingRequest("full", params={"nthread": 1}, num_round=30), lake=lake)
        store = EventStore(f"sqlite:///{home / 'events.sqlite'}")
        scored = [START + timedelta(days=DAYS - SCORED_DAYS + 1 + n) for n in range(SCORED_DAYS)]  # to the day after
        summary = score_dates(scored, lake=lake, store=store)
        raise_alerts(scored, store=store, notifier=Notifier())
        prepared_s = time.perf_counter() - started
        settings = replace(load_settings(), home=home, api_token=Secret(TOKEN), prediction_flush_seconds=600.0)
        with live_server(create_app(settings, lake, store)) as url:
            yield SimpleNamespace(url=url, lake=lake, store=store, frames=frames, scored=scored, summary=summary,
                                  prepared_s=prepared_s)
        store.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, through playwright (never `playwright install`)."""
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium is not installed ({CHROMIUM} missing): apt-get install chromium — the dashboard test "
                    "drives Debian's Chromium with playwright", pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


def chart(page, element_id: str) -> dict:
    """What plotly drew in an element: trace types, values per trace (count, sum), shapes, annotations."""
    return page.evaluate("""(id) => {
        const node = document.getElementById(id);
        if (!node || !node.data) return null;
        const values = (t) => (t.type === 'heatmap' ? t.z.flat() : t.y || []).filter((v) => v !== null);
        return {types: node.data.map((t) => t.type), points: node.data.map((t) => values(t).length),
                sums: node.data.map((t) => values(t).reduce((a, b) => a + b, 0)), names: node.data.map((t) => t.name),
                shapes: (node.layout.shapes || []).map((s) => ({type: s.type, y0: s.y0, y1: s.y1})),
                annotations: (node.layout.annotations || []).map((a) => a.text),
                drawn: node.querySelectorAll('.main-svg').length};
    }""", element_id)


def test_the_dashboard_shows_the_runs_data_in_chromium_without_console_errors(demo, browser) -> None:
    newest = read_predictions(demo.lake, demo.scored[-1], demo.scored[-1]).sort_by([("probability", "descending"),
                                                                                    ("vin", "ascending")])
    top_vin, top_cell = newest["vin"][0].as_py(), newest["suspect_cell"][0].as_py()
    alarms = pc.sum(newest["alarm"].cast(pa.int64())).as_py()
    last_day = daily_zone.daily_days(demo.lake)[-1]
    window = (last_day - timedelta(days=59), last_day)  # the vehicle page's default 60 days
    daily = daily_zone.read_daily(demo.lake, *window)
    daily = daily.filter(pc.and_(pc.equal(daily["vin"], top_vin), pc.is_valid(daily["cell_range_max_mv"])))
    cells = daily_zone.read_cell_daily(demo.lake, *window)
    cells = cells.filter(pc.and_(pc.equal(cells["vin"], top_vin), pc.is_valid(cells["cell_dev_mv"])))
    started = time.perf_counter()
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(f"console {message.type}: {message.text}")
            if message.type in ("error", "warning") else None)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.on("response", lambda response: problems.append(f"{response.status}: {response.url}")
            if response.status >= 400 else None)

    page.goto(f"{demo.url}/#/vehicles/{top_vin}")  # no session yet: the login form, then back to that vehicle
    assert page.url.startswith(f"{demo.url}/login?next=/")
    page.fill("#token", TOKEN)
    page.click("form.login button[type=submit]")
    page.wait_for_selector("body[data-ready=vehicle]", timeout=30_000)
    assert page.inner_text("#vehicle-vin") == top_vin
    history, heatmap, trend = (chart(page, name) for name in ("history-chart", "heatmap-chart", "range-chart"))
    assert history["types"][:2] == ["scatter", "scatter"] and history["points"][0] == len(demo.scored)
    assert heatmap["types"][0] == "heatmap" and heatmap["points"][0] == cells.num_rows > 40 * 80
    assert heatmap["shapes"][0]["type"] == "rect" and heatmap["shapes"][0]["y0"] < top_cell < heatmap["shapes"][0]["y1"]
    assert f"suspect cell #{top_cell}" in heatmap["annotations"]
    assert [s["y0"] for s in trend["shapes"]] == [300, 250] and trend["points"][0] == daily.num_rows > 40
    assert page.evaluate("document.cookie") == ""  # the session cookie is HttpOnly: page scripts cannot read it
    demo.lake.write_bytes(f"{SCREENSHOTS}/vehicle.png", page.screenshot(full_page=True))

    page.click("nav a[data-nav=fleet]")
    page.wait_for_selector("body[data-ready=fleet]", timeout=30_000)
    rows = page.eval_on_selector_all("#fleet-table tbody tr", "rows => rows.map(r => r.dataset.vin)")
    assert len(rows) == VEHICLES and rows[0] == top_vin
    kpis = page.eval_on_selector_all(".kpi .value", "values => values.map(v => v.textContent)")
    assert kpis[:2] == [str(VEHICLES), str(alarms)]
    timeline = chart(page, "timeline-chart")
    assert timeline["types"] == ["bar", "scatter", "scatter", "scatter"] and timeline["drawn"] >= 1
    assert timeline["sums"][0] > 0 and timeline["points"][1] == len(demo.scored)  # BMS alarms; predicted per as_of
    assert timeline["sums"][1] == demo.summary.alarms
    demo.lake.write_bytes(f"{SCREENSHOTS}/fleet.png", page.screenshot(full_page=True))

    page.click("#fleet-table th[data-sort=vin]")
    page.wait_for_selector("body[data-ready=fleet]")
    by_vin = page.eval_on_selector_all("#fleet-table tbody tr", "rows => rows.map(r => r.dataset.vin)")
    assert by_vin == sorted(rows)
    page.fill("#search", top_vin[-6:])
    page.wait_for_function("() => document.querySelectorAll('#fleet-table tbody tr').length === 1 "
                           "&& document.body.dataset.ready === 'fleet'")
    assert page.inner_text("#fleet-table tbody tr td.vin") == top_vin

    page.click("nav a[data-nav=model]")
    page.wait_for_selector("body[data-ready=model]", timeout=30_000)
    assert "full champion" in page.inner_text("#models")
    for kind in ("roc", "pr"):  # plotly from the card's curve points, else the evaluation report's figure
        drawn = chart(page, f"curve-{kind}-0")
        image = page.evaluate(f"(() => {{ const i = document.querySelector('#models img[src*=\"/{kind}.png\"]');"
                              "return i ? i.complete && i.naturalWidth : null; })()")
        assert (drawn and drawn["points"][0] >= 2) or (image and image > 100), f"no {kind} curve on the model card"
    demo.lake.write_bytes(f"{SCREENSHOTS}/model.png", page.screenshot(full_page=True))

    page.click("header form button[type=submit]")
    page.wait_for_url(f"{demo.url}/login")
    context.close()
    browsed_s = time.perf_counter() - started
    print(f"\ndemo-like run prepared in {demo.prepared_s:.1f} s ({demo.frames:,} frames), browsed in {browsed_s:.1f} s; "
          f"screenshots in {demo.lake.path(SCREENSHOTS)}")
    assert problems == []
