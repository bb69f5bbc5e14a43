"""Reusable Airflow pieces for CellGuard DAGs (assets, sensors, notifiers). No business logic here."""
