"""The `cellguard` command as a person uses it: simulate, ingest, status, with summaries that add up."""

from __future__ import annotations

import re

import pytest

from pipelines.cli import main


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CELLGUARD_HOME", str(tmp_path))
    monkeypatch.setenv("CELLGUARD_DATA_DOCS", "0")
    monkeypatch.delenv("CELLGUARD_LAKE_URI", raising=False)
    monkeypatch.delenv("CELLGUARD_CATALOG_PATH", raising=False)
    return tmp_path


def _numbers(line: str) -> list[int]:
    return [int(n.replace(",", "")) for n in re.findall(r"\d[\d,]*", line)]


def test_simulate_ingest_status(home, capsys):
    assert main(["simulate", "--vehicles", "2", "--days", "1", "--format", "csv", "--damaged", "--seed", "5"]) == 0
    out = capsys.readouterr().out
    assert "simulated 2 vehicles × 1 days" in out and "damaged re-uploads" in out

    assert main(["ingest"]) == 0
    out = capsys.readouterr().out
    counts = next(line for line in out.splitlines() if line.strip().startswith("rows in"))
    rows_in, accepted, quarantined, duplicates = _numbers(counts)
    assert rows_in == accepted + quarantined + duplicates and quarantined >= 4
    assert "quarantined by rule:" in out and "catalog:" in out

    assert main(["ingest"]) == 0
    assert "nothing to ingest" in capsys.readouterr().out

    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert f"accepted {accepted:,}" in out and "DO NOT RECONCILE" not in out
    assert "quarantine soc_range" in out

    assert main(["features"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"daily rows: 2 for 1 dates \(2026-01-01 … 2026-01-01\)", out), out
    assert main(["features"]) == 0
    assert "nothing to compute" in capsys.readouterr().out
    assert main(["status"]) == 0
    assert "daily: 2 vehicle-days from 2 vehicles" in capsys.readouterr().out


def test_models_before_any_training_says_how_to_get_one(home, capsys):
    assert main(["models"]) == 0
    assert "no models in" in capsys.readouterr().out


def test_train_without_daily_rows_exits_with_the_reason(home, capsys):
    assert main(["train", "--feature-set", "full"]) == 2
    assert "no daily rows" in capsys.readouterr().err


def test_bad_arguments_exit_with_a_message(home, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- import-daily

DAILY_HEADER = "VIN,Date,TotalVoltage,TotalCurrent,CellMaxVoltage,CellMinVoltage,MaxTemperature,MinTemperature,Label"


@pytest.fixture
def daily_home(tmp_path, isolate_settings):
    return isolate_settings(tmp_path / "home")


def _summary_file(path, days_ago: list[int], extra: tuple[str, ...] = ()) -> tuple:
    """A summary file of one vehicle for days before today (rules reject future dates), plus extra rows."""
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()
    days = [today - dt.timedelta(days=n) for n in days_ago]
    rows = [f"LSVAB1234CD567890,{d.isoformat()},350.4,12.5,3.712,3.701,31,25,{int(i == 0)}" for i, d in enumerate(days)]
    path.write_text("\n".join([DAILY_HEADER, *rows, *extra]) + "\n")
    return path, sorted(days)


def test_import_daily_prints_counts_and_reimport_says_already_imported(daily_home, tmp_path, capsys):
    empty_day = "LFV2A2156K3000001,2026-01-05,,,,,,,"
    path, days = _summary_file(tmp_path / "summaries.csv", [3, 2, 1],
                                  (empty_day, "LSVAB1234CD56789O,2026-01-05,1,1,3.7,3.6,30,20,0"))
    assert main(["import-daily", str(path)]) == 0
    out = capsys.readouterr().out
    counts = next(line for line in out.splitlines() if line.strip().startswith("rows in"))
    assert _numbers(counts) == [5, 4, 1, 0, 1]  # rows in, accepted, quarantined, duplicates, empty days
    assert f"dates:      2026-01-05 … {days[-1].isoformat()} (4 partitions written)" in out
    assert "quarantined by rule: vin_format 1" in out and "/quarantine/rows/" in out
    assert (daily_home / "catalog.duckdb").exists()
    assert len(list((daily_home / "lake" / "daily").glob("dt=*/import-*.parquet"))) == 4

    assert main(["import-daily", str(path)]) == 0
    out = capsys.readouterr().out
    assert "already imported" in out
    counts = next(line for line in out.splitlines() if line.strip().startswith("rows in"))
    assert _numbers(counts) == [5, 0, 1, 4, 0]


def test_import_daily_exits_1_when_a_file_is_rejected_whole(daily_home, tmp_path, capsys):
    import gzip

    good, _ = _summary_file(tmp_path / "good.csv", [1])
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(good.read_bytes() * 50)[:60])
    assert main(["import-daily", str(broken), str(good)]) == 1
    captured = capsys.readouterr()
    (message,) = captured.err.strip().splitlines()
    assert message.startswith(f"cellguard import-daily: {broken} rejected whole: gzip stream is damaged or truncated")
    assert "/quarantine/files/" in message and message.endswith("/broken.csv.gz")
    assert "good.csv: imported" in captured.out  # the other file still went in


def test_import_daily_wrong_header_and_missing_file(daily_home, tmp_path, capsys):
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("vin,day,volts\nLSVAB1234CD567890,2026-01-05,350\n")
    assert main(["import-daily", str(wrong)]) == 1
    assert "rejected whole: header lacks VIN, Date, TotalVoltage" in capsys.readouterr().err

    assert main(["import-daily", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
