# syntax=docker/dockerfile:1
# Superset for the team server, in its own image: superset/requirements.txt pins clash with Airflow's.
# Build context: the repository root (see .dockerignore).
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SUPERSET_CONFIG_PATH=/app/superset_config.py \
    SUPERSET_HOME=/var/lib/superset

# curl for the healthcheck
RUN apt-get update \
 && apt-get install --yes --no-install-recommends curl \
 && rm -rf /var/lib/apt/lists/*

# The same uid as the CellGuard image, so the shared catalog volume reads alike in both.
RUN useradd --uid 50000 --user-group --create-home --home-dir /home/superset superset \
 && mkdir -p /app /var/lib/superset \
 && chown superset:superset /var/lib/superset

WORKDIR /app
COPY superset/requirements.txt ./requirements.txt
RUN pip install --no-cache-dir uv==0.13.9 \
 && uv pip install --system --no-cache -r requirements.txt

COPY superset/superset_config.py ./superset_config.py
COPY superset/bundle/ ./bundle/
COPY docker/entrypoint.sh docker/duckdb_lake_secret.py docker/superset-init.sh docker/superset_bundle.py \
     docker/superset_import.py docker/

USER superset
# DuckDB reads the catalog's s3:// views with httpfs; install it now rather than download it at run time.
RUN python -c "import duckdb; duckdb.execute('INSTALL httpfs')"

ENTRYPOINT ["bash", "/app/docker/entrypoint.sh"]
CMD ["gunicorn", "--bind", "0.0.0.0:8088", "--workers", "2", "--timeout", "120", "superset.app:create_app()"]
