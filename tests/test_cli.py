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


def test_bad_arguments_exit_with_a_message(home, capsys):
    with pytest.raises(SystemExit):
        main(["simulate", "--format", "xml"])
    assert "invalid choice: 'xml'" in capsys.readouterr().err
