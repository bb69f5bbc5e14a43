"""Shared builders for the simulator tests: small, explicit vehicles with chosen faults."""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np
import pytest

from pipelines.simulate import FaultSpec, SimulationParams, VehicleSpec, build_fleet
from pipelines.simulate.vehicle import VehicleFrames, simulate_vehicle

START = datetime.date(2026, 1, 1)


def params(**overrides) -> SimulationParams:
    """Small defaults: one vehicle, 20 days, 30 s frames, no random faults."""
    values = {"vehicles": 1, "days": 20, "interval_s": 30, "seed": 3, "fault_fraction": 0.0, "start_date": START}
    values.update(overrides)
    return SimulationParams(**values)


def vehicle_spec(run: SimulationParams, faults: tuple[FaultSpec, ...] = (), **overrides) -> VehicleSpec:
    """A 96-cell 150 Ah NMC pack (unless overridden) on top of the run's first drawn vehicle."""
    base = build_fleet(run)[0]
    values = {"chemistry": "NMC", "n_cells": 96, "n_probes": 24, "capacity_ah": 150.0, "usage": "private_home",
              "faults": faults}
    values.update(overrides)
    return dataclasses.replace(base, **values)


def deviation_mv(frames: VehicleFrames, cell: int) -> np.ndarray:
    """A 1-based cell's reading minus the frame's median reading."""
    readings = frames.cell_mv.astype(np.float64)
    return readings[:, cell - 1] - np.median(readings, axis=1)


def days_since_start(frames: VehicleFrames) -> np.ndarray:
    """Frame time as days after the simulation start."""
    start_ms = (START - datetime.date(1970, 1, 1)).days * 86_400_000
    return (frames.ts_ms - start_ms) / 86_400_000.0


@pytest.fixture(scope="package")
def healthy_ride_hailing() -> VehicleFrames:
    """A healthy NMC taxi over 20 days: it runs the pack low every day."""
    run = params()
    return simulate_vehicle(vehicle_spec(run, usage="ride_hailing"), run)


@pytest.fixture(scope="package")
def healthy_private() -> VehicleFrames:
    """A healthy NMC private car with a home charger over 20 days."""
    run = params()
    return simulate_vehicle(vehicle_spec(run, usage="private_home"), run)
