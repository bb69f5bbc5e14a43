"""The simulator's parameters and run summary."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

FILE_FORMATS = ("parquet", "jsonl", "csv", "mixed")
SHAPES = ("native", "wide_export")


@dataclass(frozen=True)
class SimulationParams:
    """Everything that decides a simulated fleet; the same params always give byte-identical files."""

    vehicles: int = 20
    days: int = 30
    start_date: datetime.date = datetime.date(2026, 1, 1)
    interval_s: int = 30  # 10–30 s
    seed: int = 42
    fault_fraction: float = 0.25
    file_format: str = "mixed"  # parquet | jsonl | csv | mixed (rotates by vehicle)
    gzip: bool = False  # for jsonl/csv; mixed gzips some of them
    shape: str = "native"  # native | wide_export
    duplicate_rate: float = 0.002  # retransmitted frames
    late_rate: float = 0.002  # frames delivered in the next period's file
    period_days: int = 1

    def __post_init__(self) -> None:
        """Reject values the simulator cannot honour, naming the field and the allowed range."""
        if self.vehicles < 1:
            raise ValueError(f"vehicles must be ≥ 1, not {self.vehicles}")
        if self.days < 1:
            raise ValueError(f"days must be ≥ 1, not {self.days}")
        if not 10 <= self.interval_s <= 30:
            raise ValueError(f"interval_s must be 10–30 s (GB/T 32960 reporting), not {self.interval_s}")
        if not 0.0 <= self.fault_fraction <= 1.0:
            raise ValueError(f"fault_fraction must be 0–1, not {self.fault_fraction}")
        if self.file_format not in FILE_FORMATS:
            raise ValueError(f"file_format must be one of {FILE_FORMATS}, not {self.file_format!r}")
        if self.shape not in SHAPES:
            raise ValueError(f"shape must be one of {SHAPES}, not {self.shape!r}")
        for name in ("duplicate_rate", "late_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 0.5:
                raise ValueError(f"{name} must be 0–0.5, not {rate}")
        if self.period_days < 1:
            raise ValueError(f"period_days must be ≥ 1, not {self.period_days}")

    @property
    def end_date(self) -> datetime.date:
        """First day after the simulated window."""
        return self.start_date + datetime.timedelta(days=self.days)


@dataclass
class SimulationSummary:
    """What one `simulate_fleet` run wrote."""

    vehicles: int
    days: int
    frames: int
    files: int
    faulty_vehicles: int
    alarm_frames: int
    duplicates_written: int
    landing_keys: list[str] = field(default_factory=list)
    ground_truth_key: str = ""
