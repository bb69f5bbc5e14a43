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
    from pipelines.storage.catalog import refresh_local_catalog

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
    catalog = refresh_local_catalog()
    print_ingest_summary(summary.counts(), seconds)
    if catalog:
        print(f"  catalog:    {catalog}   (duckdb -readonly {catalog} \"select * from quarantine limit 5\")")
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


def _catalog(args: argparse.Namespace) -> int:
    from pipelines.storage.catalog import refresh_local_catalog

    path = refresh_local_catalog()
    print(f"catalog rebuilt: {path}" if path else "backend is not local: the Glue catalog is the catalog")
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
