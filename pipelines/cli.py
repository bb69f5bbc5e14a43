"""The `cellguard` command: simulate a fleet, ingest landing objects, rebuild the catalog, show the lake."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time

from tqdm import tqdm

from pipelines.config import load_settings, settings_table_markdown


def _simulate(args: argparse.Namespace) -> int:
    from pipelines.simulate import SimulationParams, simulate_fleet
    from pipelines.simulate.damage import damage_uploads
    from pipelines.storage.lake import Lake

    params = SimulationParams(vehicles=args.vehicles, days=args.days, start_date=args.start_date, interval_s=args.interval_s,
                              seed=args.seed, fault_fraction=args.fault_fraction, file_format=args.format,
                              gzip=args.gzip, shape=args.shape)
    lake = Lake.from_settings()
    started = time.perf_counter()
    with tqdm(total=params.vehicles, unit="vehicle", desc="simulate", file=sys.stderr) as bar:
        summary = simulate_fleet(params, lake, progress=bar.update)
    seconds = time.perf_counter() - started
    damaged = damage_uploads(lake, summary.landing_keys, seed=args.seed) if args.damaged else []
    print(f"simulated {summary.vehicles} vehicles × {summary.days} days: {summary.frames:,} frames "
          f"({summary.frames / seconds:,.0f} frames/s) in {summary.files:,} landing files")
    print(f"  faulty vehicles: {summary.faulty_vehicles}, frames with the consistency alarm (bit 10): {summary.alarm_frames:,}, "
          f"retransmitted duplicates: {summary.duplicates_written:,}")
    if damaged:
        print(f"  damaged re-uploads (for the quarantine to catch): {len(damaged)}: "
              + ", ".join(k.rsplit("-", 1)[1] for k in damaged))
    print(f"  landing:      {lake.url('landing')}")
    print(f"  ground truth: {lake.url(summary.ground_truth_key)}")
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from pipelines.ingest import ingest_pending, pending_landing_keys
    from pipelines.storage.catalog import refresh_catalog

    keys = args.key or pending_landing_keys()
    if not keys:
        print("nothing to ingest: every landing object is in the manifest")
        return 0
    started = time.perf_counter()
    with tqdm(total=len(keys), unit="file", desc="ingest", file=sys.stderr) as bar:
        rows = 0

        def progress(done_rows: int, done_objects: int) -> None:
            nonlocal rows
            rows += done_rows
            bar.update(done_objects)
            bar.set_postfix(rows=f"{rows:,}")

        summary = ingest_pending(keys=keys, progress=progress)
    seconds = time.perf_counter() - started
    catalog = refresh_catalog()
    print_ingest_summary(summary.counts(), seconds)
    hint = "" if catalog.startswith("glue://") else f"   (duckdb -readonly {catalog} \"select * from quarantine limit 5\")"
    print(f"  catalog:    {catalog}{hint}")
    if not summary.reconciles():
        print("ERROR: counts do not reconcile", file=sys.stderr)
        return 1
    return 0


def print_ingest_summary(counts: dict, seconds: float | None = None) -> None:
    """The end-of-run summary a person reads: counts that add up, top reasons, where things went."""
    from pipelines.storage.lake import Lake

    lake = Lake.from_settings()
    rate = f" in {seconds:.1f} s ({counts['rows_in'] / seconds:,.0f} rows/s)" if seconds else ""
    print(f"ingested {counts['objects']} objects{rate}; {counts['unchanged']} unchanged, "
          f"{counts['rejected_objects']} rejected whole")
    print(f"  rows in {counts['rows_in']:,} = accepted {counts['accepted']:,} + quarantined {counts['quarantined']:,} "
          f"+ duplicates {counts['duplicates']:,}")
    if counts["sentinels"]:
        print("  sentinels set to null: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts["sentinels"].items())))
    if counts["rejected_by_rule"]:
        top = sorted(counts["rejected_by_rule"].items(), key=lambda kv: -kv[1])
        print("  quarantined by rule: " + ", ".join(f"{k} {v:,}" for k, v in top))
    print(f"  dates:      {', '.join(counts['touched_dates'][:3])}{' …' if len(counts['touched_dates']) > 3 else ''} "
          f"({len(counts['touched_dates'])} partitions)")
    print(f"  frames:     {lake.url('frames')}")
    print(f"  quarantine: {lake.url('quarantine')}")
    print(f"  manifest:   {lake.url('_manifest')}")
    if counts.get("data_docs"):
        print(f"  data docs:  file://{counts['data_docs']}")


def _import_daily(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pipelines.ingest.daily_summaries import import_daily_file
    from pipelines.storage.catalog import refresh_catalog
    from pipelines.storage.lake import Lake

    paths = [Path(name) for name in args.files]
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        print(f"cellguard import-daily: no such file: {', '.join(missing)} (nothing imported)", file=sys.stderr)
        return 2
    lake = Lake.from_settings()
    status = 0
    for path in paths:
        summary = import_daily_file(path, lake)
        if summary.error:
            print(f"cellguard import-daily: {path} rejected whole: {summary.error}. File copied to "
                  f"{lake.url(summary.quarantined_file_key)}", file=sys.stderr)
            status = 1
            continue
        state = "already imported, nothing new written" if summary.already_imported else "imported"
        print(f"{path}: {state} (import {summary.import_id})")
        print(f"  rows in {summary.rows_in:,} = accepted {summary.accepted:,} + quarantined {summary.quarantined:,} "
              f"+ duplicates {summary.duplicates:,}; empty days {summary.empty_days:,}")
        span = f"{summary.first_date} … {summary.last_date}" if summary.first_date else "none"
        print(f"  dates:      {span} ({len(summary.dates)} partitions written)")
        if summary.rejected_by_rule:
            top = sorted(summary.rejected_by_rule.items(), key=lambda kv: -kv[1])
            print("  quarantined by rule: " + ", ".join(f"{k} {v:,}" for k, v in top))
            print(f"  quarantine: {lake.url(summary.quarantine_key)}")
        print(f"  daily:      {lake.url('daily')}")
        if not summary.reconciles():
            print(f"ERROR: counts of {path} do not reconcile", file=sys.stderr)
            status = 1
    print(f"  catalog:    {refresh_catalog()}")
    return status


def _features(args: argparse.Namespace) -> int:
    from pipelines.features.pipeline import compute_daily
    from pipelines.storage.catalog import refresh_catalog

    summary = compute_daily(args.dates or None, progress=lambda message: print(message, file=sys.stderr))
    if not summary.computed:
        print("nothing to compute: every date with frames has daily rows (name dates with --dates to recompute)")
        return 0
    print(f"daily rows: {summary.daily_rows:,} for {len(summary.computed)} dates "
          f"({summary.computed[0]} … {summary.computed[-1]}) in {summary.seconds:.1f} s")
    if summary.without_frames:
        print(f"  dates without frames (nothing written): {', '.join(summary.without_frames)}")
    refresh_catalog()
    return 0


def _train(args: argparse.Namespace) -> int:
    from pipelines.training.pipeline import TrainingRequest, train_and_register

    for feature_set in args.feature_set or ["full", "signals6"]:
        request = TrainingRequest(feature_set=feature_set, first_as_of=args.first_as_of, last_as_of=args.last_as_of,
                                  num_round=args.num_round, target_precision=args.target_precision)
        result = train_and_register(request, progress=lambda message: print(message, file=sys.stderr))
        print(result.headline())
        print(f"  report: {result.report_url}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from pipelines.storage.lake import Lake
    from pipelines.training import registry

    lake = Lake.from_settings()
    versions = registry.list_versions(lake)
    if not versions:
        print(f"no models in {lake.url('models/bms')}: run `cellguard train` or the bms_training DAG")
        return 0
    champions = {fs: registry.champion(lake, fs) for fs in {v.card["feature_set"] for v in versions}}
    print("average precision and ROC AUC on each version's time-split test window; the reference recipe "
          "(84 raw values, -1 for missing) trained and tested on the same split")
    print(f"{'version':<32} {'features':<9} {'AP':>6} {'ref AP':>7} {'ROC AUC':>8} {'ref AUC':>8} {'threshold':>9}  champion")
    for version in versions:
        card, metrics = version.card, version.card.get("metrics", {})
        reference = card.get("baseline_metrics") or {}
        is_champion = champions.get(card["feature_set"]) and champions[card["feature_set"]].version == version.version

        def fmt(value: float | None) -> str:
            return "—" if value is None else f"{value:.3f}"

        print(f"{version.version:<32} {card['feature_set']:<9} {fmt(metrics.get('average_precision')):>6} "
              f"{fmt(reference.get('average_precision')):>7} {fmt(metrics.get('roc_auc')):>8} "
              f"{fmt(reference.get('roc_auc')):>8} {fmt(card.get('threshold')):>9}  {'★' if is_champion else ''}")
    for feature_set, current in sorted(champions.items()):
        if current:
            print(f"{feature_set} champion report: {lake.url(current.key + 'report/index.html')}")
    return 0


def _serve_model(args: argparse.Namespace) -> int:
    from pipelines.serving.model_server import serve_model

    settings = load_settings()
    port = args.port if args.port is not None else settings.model_server_port
    serve_model(host=args.host, port=port, feature_set=args.feature_set, poll_seconds=settings.model_poll_seconds)
    return 0


def _serve_api(args: argparse.Namespace) -> int:
    from pipelines.serving.api import serve_api

    settings = load_settings()
    serve_api(host=args.host, port=args.port if args.port is not None else settings.api_port, settings=settings)
    return 0


def _at_risk(args: argparse.Namespace) -> int:
    from pipelines.serving.tour import alert_lines, at_risk_lines, latest_predictions
    from pipelines.storage.event_stores import open_event_store
    from pipelines.storage.lake import Lake

    lake = Lake.from_settings()
    print("\n".join(at_risk_lines(lake, top=args.top, feature_set=args.feature_set)))
    latest = latest_predictions(lake, args.feature_set)
    if latest.num_rows:
        print("\n".join(alert_lines(open_event_store(), latest["as_of"][0].as_py())))
    return 0


def _try_api(args: argparse.Namespace) -> int:
    from pipelines.serving.api_auth import token_path
    from pipelines.serving.tour import try_the_api
    from pipelines.storage.lake import Lake

    settings = load_settings()
    token = settings.api_token.reveal() if settings.api_token else token_path(settings).read_text().strip()
    url = args.url or f"http://127.0.0.1:{settings.api_port}"
    print("\n".join(try_the_api(Lake.from_settings(settings), url, token)))
    return 0


def _catalog(args: argparse.Namespace) -> int:
    from pipelines.storage.catalog import refresh_catalog

    print(f"catalog refreshed: {refresh_catalog()}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from pipelines.storage.catalog import connect_read_only, refresh_local_catalog

    settings = load_settings()
    path = refresh_local_catalog() if not settings.catalog_path.exists() else settings.catalog_path
    with connect_read_only(path) as con:
        totals = con.execute("""
            select count(*) as objects, coalesce(sum(rows_in), 0), coalesce(sum(accepted), 0),
                   coalesce(sum(quarantined), 0), coalesce(sum(duplicates), 0),
                   count(*) filter (where status = 'rejected')
            from manifest""").fetchone()
        print(f"lake {settings.lake_uri}")
        print(f"  {totals[0]:,} landing objects ingested, {totals[5]:,} rejected whole")
        print(f"  rows in {totals[1]:,} = accepted {totals[2]:,} + quarantined {totals[3]:,} + duplicates {totals[4]:,}"
              f"{'' if totals[1] == totals[2] + totals[3] + totals[4] else '  (DO NOT RECONCILE)'}")
        sentinels = con.execute("""
            select name, sum(n) from (select unnest(map_keys(sentinels)) as name, unnest(map_values(sentinels)) as n
                                      from manifest) group by name order by name""").fetchall()
        if sentinels:
            print("  sentinels set to null: " + ", ".join(f"{name} {int(n):,}" for name, n in sentinels))
        frames = con.execute("select count(*), count(distinct vin), min(ts), max(ts) from frames").fetchone()
        print(f"  frames: {frames[0]:,} from {frames[1]:,} vehicles, {frames[2]} … {frames[3]}")
        daily = con.execute("select count(*), count(distinct vin), min(dt), max(dt), count(*) filter (where alarm) "
                            "from daily").fetchone()
        if daily[0]:
            print(f"  daily: {daily[0]:,} vehicle-days from {daily[1]:,} vehicles, {daily[2]} … {daily[3]}; "
                  f"{daily[4]:,} with the consistency alarm")
        reasons = con.execute("""
            select rule, count(*) as n, any_value(reason) as example from quarantine
            group by rule order by n desc limit 8""").fetchall()
        for rule, n, example in reasons:
            print(f"  quarantine {rule:<20} {n:>8,}  e.g. {example[:100]}")
    print(f"  catalog: {path}")
    return 0


def _config(args: argparse.Namespace) -> int:
    if args.markdown:
        print(settings_table_markdown())
    else:
        settings = load_settings()
        print(json.dumps({k: str(v) for k, v in settings.__dict__.items()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cellguard", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    sim = commands.add_parser("simulate", help="simulate a fleet and write upload files into landing/")
    sim.add_argument("--vehicles", type=int, default=20)
    sim.add_argument("--days", type=int, default=30)
    sim.add_argument("--start-date", type=dt.date.fromisoformat, default=dt.date(2026, 1, 1))
    sim.add_argument("--interval-s", type=int, default=30, help="sampling interval while active, 10–30 s")
    sim.add_argument("--seed", type=int, default=42)
    sim.add_argument("--fault-fraction", type=float, default=0.25)
    sim.add_argument("--format", choices=["parquet", "jsonl", "csv", "mixed"], default="mixed")
    sim.add_argument("--gzip", action="store_true", help="gzip JSON lines and CSV files")
    sim.add_argument("--shape", choices=["native", "wide_export"], default="native",
                     help="native simulator files, or a telematics platform's wide CSV export")
    sim.add_argument("--damaged", action="store_true",
                     help="also write a few damaged re-uploads (bad values, bad bytes, truncated gzip) to see the quarantine work")
    sim.set_defaults(func=_simulate)

    ing = commands.add_parser("ingest", help="ingest pending landing objects into frames/ and quarantine/")
    ing.add_argument("--key", action="append", help="only this landing key (repeatable)")
    ing.set_defaults(func=_ingest)

    imp = commands.add_parser("import-daily", help="import daily summaries (reference format, CSV or .csv.gz) into daily/")
    imp.add_argument("files", nargs="+", metavar="FILE",
                     help="VIN,Date,TotalVoltage,TotalCurrent,CellMaxVoltage,CellMinVoltage,MaxTemperature,MinTemperature,Label")
    imp.set_defaults(func=_import_daily)

    feat = commands.add_parser("features", help="recompute daily/ from frames (default: dates not yet computed)")
    feat.add_argument("--dates", nargs="+", type=dt.date.fromisoformat, metavar="YYYY-MM-DD",
                      help="recompute these dates (and the following six that read them)")
    feat.set_defaults(func=_features)

    trn = commands.add_parser("train", help="train, evaluate beside the reference recipe, register and gate a model")
    trn.add_argument("--feature-set", action="append", choices=["full", "signals6"],
                     help="repeatable; default both")
    trn.add_argument("--first-as-of", type=dt.date.fromisoformat, default=None)
    trn.add_argument("--last-as-of", type=dt.date.fromisoformat, default=None)
    trn.add_argument("--num-round", type=int, default=300)
    trn.add_argument("--target-precision", type=float, default=0.5)
    trn.set_defaults(func=_train)

    commands.add_parser("models", help="registered model versions and champions").set_defaults(func=_models)

    srv = commands.add_parser("serve-model", help="serve the champion models over the SageMaker inference "
                                                  "container contract (/ping, /invocations)")
    srv.add_argument("--port", type=int, default=None, help="default: CELLGUARD_MODEL_SERVER_PORT (8081)")
    srv.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    srv.add_argument("--feature-set", choices=["full", "signals6"], default="signals6",
                     help="the champion /invocations serves; /endpoints/cellguard-<feature set>/invocations serves each")
    srv.set_defaults(func=_serve_model)

    api = commands.add_parser("serve-api", help="serve the prediction API (POST /v1/predictions, read routes, "
                                                "OpenAPI docs at /docs); bearer token CELLGUARD_API_TOKEN, or a "
                                                "generated one printed and written to $CELLGUARD_HOME/api-token")
    api.add_argument("--port", type=int, default=None, help="default: CELLGUARD_API_PORT (8000)")
    api.add_argument("--host", default="127.0.0.1", help="0.0.0.0 inside a container")
    api.set_defaults(func=_serve_api)

    risk = commands.add_parser("at-risk", help="the vehicles most likely to alarm, from the latest batch predictions")
    risk.add_argument("--top", type=int, default=10)
    risk.add_argument("--feature-set", choices=["full", "signals6"], default="full")
    risk.set_defaults(func=_at_risk)

    tour = commands.add_parser("try-api", help="send one reference-format request and one by VIN to the running API")
    tour.add_argument("--url", default=None, help="default: http://127.0.0.1:$CELLGUARD_API_PORT")
    tour.set_defaults(func=_try_api)

    commands.add_parser("catalog", help="rebuild the DuckDB catalog (views over the lake)").set_defaults(func=_catalog)
    commands.add_parser("status", help="what the lake holds: counts, quarantine reasons").set_defaults(func=_status)
    cfg = commands.add_parser("config", help="show the resolved settings")
    cfg.add_argument("--markdown", action="store_true", help="print the settings table for the README")
    cfg.set_defaults(func=_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, OSError) as exc:
        print(f"cellguard {args.command}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
