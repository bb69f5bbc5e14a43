"""Fleet telemetry simulator: cell physics, BMS alarm logic and landing files, seeded and deterministic.

    summary = simulate_fleet(SimulationParams(vehicles=20, days=30), Lake.from_settings())
    table = simulate_vehicle_frames(SimulationParams(vehicles=4, days=3), vehicle=0)  # FRAME_SCHEMA
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from pipelines.schema import CELL_CONSISTENCY_ALARM_MASK
from pipelines.simulate.bms import DEFAULT_THRESHOLDS, AlarmThresholds
from pipelines.simulate.faults import FAULT_TYPES, FaultSpec
from pipelines.simulate.fleet import VehicleSpec, build_fleet, is_valid_vin, vehicle_rng
from pipelines.simulate.params import SimulationParams, SimulationSummary
from pipelines.simulate.vehicle import STREAM_DELIVERY, VehicleFrames, simulate_vehicle, to_frame_table
from pipelines.simulate.writer import (
    FLEET_KEY,
    GROUND_TRUTH_KEY,
    fleet_csv,
    ground_truth_csv,
    merge_by_vin,
    write_vehicle_files,
)
from pipelines.storage.lake import Lake

__all__ = [
    "FAULT_TYPES",
    "AlarmThresholds",
    "FaultSpec",
    "SimulationParams",
    "SimulationSummary",
    "VehicleFrames",
    "VehicleSpec",
    "build_fleet",
    "is_valid_vin",
    "simulate_fleet",
    "simulate_vehicle",
    "simulate_vehicle_frames",
]


def simulate_fleet(
    params: SimulationParams, lake: Lake, progress: Callable[[int], None] | None = None
) -> SimulationSummary:
    """Simulate every vehicle (one at a time) and write its landing files, the ground truth and the fleet list.

    progress(n) is called with the number of vehicles just finished (for a tqdm bar).
    """
    fleet = build_fleet(params)
    summary = SimulationSummary(
        vehicles=params.vehicles, days=params.days, frames=0, files=0,
        faulty_vehicles=sum(1 for spec in fleet if spec.faults), alarm_frames=0, duplicates_written=0,
    )
    for spec in fleet:
        frames = simulate_vehicle(spec, params, DEFAULT_THRESHOLDS)
        keys, duplicates = write_vehicle_files(lake, frames, params, vehicle_rng(params.seed, spec.index, STREAM_DELIVERY))
        summary.frames += len(frames)
        summary.alarm_frames += int(((frames.alarm_flags & CELL_CONSISTENCY_ALARM_MASK) > 0).sum())
        summary.duplicates_written += duplicates
        summary.landing_keys.extend(keys)
        if progress is not None:
            progress(1)
    # Several simulations may share a lake (e.g. a native fleet and a wide-export fleet): merge by VIN.
    for key, text in ((GROUND_TRUTH_KEY, ground_truth_csv(fleet)), (FLEET_KEY, fleet_csv(fleet))):
        lake.write_bytes(key, merge_by_vin(lake.read_bytes(key) if lake.exists(key) else None, text))
    summary.files = len(summary.landing_keys)
    summary.ground_truth_key = GROUND_TRUTH_KEY
    return summary


def simulate_vehicle_frames(
    params: SimulationParams,
    vehicle: int | VehicleSpec = 0,
    thresholds: AlarmThresholds = DEFAULT_THRESHOLDS,
) -> pa.Table:
    """One vehicle's frames in memory, in FRAME_SCHEMA (sentinel cells → null, probes in °C, invalid → null).

    `vehicle` is an index into `build_fleet(params)` or a spec of your own (e.g. with chosen faults).
    No delivery defects: every frame once, in time order.
    """
    spec = build_fleet(params)[vehicle] if isinstance(vehicle, int) else vehicle
    return to_frame_table(simulate_vehicle(spec, params, thresholds))
