"""Athena statements: submit one in the configured database and workgroup, wait with backoff, fail with its reason.

The one place CellGuard talks to Athena's query API: the Glue catalog's view DDL (glue_catalog.py) and the feature
queries' CTAS and UNLOAD (pipelines/features/athena_runner.py) both go through `run_statement`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from pipelines.config import Settings

FIRST_POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 10.0
FINAL_STATES = ("SUCCEEDED", "FAILED", "CANCELLED")

log = logging.getLogger(__name__)


class AthenaQueryFailed(RuntimeError):
    """Athena ended a statement FAILED or CANCELLED; the message holds its query id and StateChangeReason."""


def failure_message(execution: Mapping[str, Any]) -> str:
    """What went wrong with one finished execution (get_query_execution's QueryExecution), for a person to act on."""
    status = execution.get("Status", {})
    reason = status.get("StateChangeReason") or status.get("AthenaError", {}).get("ErrorMessage") or "no reason given"
    first_line = (execution.get("Query") or "").strip().splitlines()[:1]
    return (f"Athena query {execution.get('QueryExecutionId')} ended {status.get('State')} "
            f"({first_line[0] if first_line else 'no statement'!r}): {reason}")


def run_statement(statement: str, settings: Settings, athena: Any, *, sleep: Callable[[float], None] = time.sleep,
                  first_poll: float = FIRST_POLL_SECONDS, max_poll: float = MAX_POLL_SECONDS) -> dict[str, Any]:
    """Submit one statement in the configured database and workgroup and wait for it; its final QueryExecution.

    The state is polled with exponential backoff (first_poll, doubling up to max_poll). FAILED or CANCELLED raise
    AthenaQueryFailed with Athena's StateChangeReason. Throttled or failed requests are retried by the client
    (botocore's standard mode), and botocore fills in StartQueryExecution's ClientRequestToken, so a request it
    retries does not start the query twice."""
    if not settings.athena_output:
        raise ValueError("Athena needs a result location: set CELLGUARD_ATHENA_OUTPUT to s3://bucket/prefix/, "
                         "or CELLGUARD_LAKE_URI to an s3:// lake")
    query_id = athena.start_query_execution(
        QueryString=statement,
        QueryExecutionContext={"Database": settings.glue_database},
        ResultConfiguration={"OutputLocation": settings.athena_output},
        WorkGroup=settings.athena_workgroup,
    )["QueryExecutionId"]
    log.info("Athena query %s submitted: %s", query_id, statement.splitlines()[0])
    delay = first_poll
    while True:
        execution = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
        state = execution["Status"]["State"]
        if state in FINAL_STATES:
            break
        sleep(delay)
        delay = min(delay * 2, max_poll)
    if state != "SUCCEEDED":
        raise AthenaQueryFailed(failure_message(execution))
    scanned = execution.get("Statistics", {}).get("DataScannedInBytes")
    log.info("Athena query %s succeeded (%s bytes scanned)", query_id, scanned)
    return execution
