"""CellGuard: predict EV battery cell-consistency alarms from BMS telemetry."""
