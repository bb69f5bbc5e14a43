"""Run the frame-contract suite over a frames table with Great Expectations and build its Data Docs."""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.quality.rules import frame_metrics
from pipelines.quality.suite import (
    SUITE_NAME,
    build_frame_suite,
    import_great_expectations,
    metrics_for_validation,
    suite_parameters,
)

SITE_NAME = "cellguard_quality"
# Suites and validation results are kept as JSON inside docs_dir, beside the HTML: the site index lists
# (and keeps the pages of) only the results its store holds, so a later process must find them there.
STORES_FOLDER = "_gx_stores"
RESULT_FORMAT = "SUMMARY"
# The index page deserialises every result it lists (~10 ms each), so the site keeps the newest
# DOCS_KEEP_RESULTS batches; older results and their pages are removed.
DOCS_KEEP_RESULTS = 100
_DATASOURCE, _ASSET, _BATCH_DEFINITION = "cellguard", "frame_metrics", "whole_batch"


@dataclass
class QualityReport:
    """Outcome of one GE validation of a frames batch."""

    success: bool
    evaluated_expectations: int
    successful_expectations: int
    failures: list[dict[str, Any]] = field(default_factory=list)
    docs_index: Path | None = None


@dataclass
class _Validator:
    """A GE context for one docs_dir (or none), with its suite, batch definition and checkpoint."""

    context: Any
    suite: Any
    batch_definition: Any
    checkpoint: Any | None


_VALIDATORS: dict[Path | None, _Validator] = {}  # one per docs_dir and process: setup costs ~0.1-1 s
_LOCK = threading.Lock()  # GE contexts are not thread-safe


def validate_frames(
    frames: pa.Table,
    batch_name: str,
    docs_dir: Path | None,
    earliest_ts: Any,
    latest_ts: Any,
    *,
    metrics: pa.Table | None = None,
) -> QualityReport:
    """Check `frame_metrics(frames)` against the frame suite; with docs_dir, add the run to its Data Docs.

    Pass `metrics=frame_metrics(frames)` if the caller has it already: it is about half the cost.
    The batch appears in the docs under `docs_run_name(batch_name)`; validating a batch name again
    replaces its earlier entry.
    """
    table = metrics_for_validation(metrics if metrics is not None else frame_metrics(frames))
    parameters = suite_parameters(earliest_ts, latest_ts)
    docs_dir = Path(docs_dir).resolve() if docs_dir is not None else None
    with _LOCK:
        validator = _validator(docs_dir)
        if validator.checkpoint is None:
            # What ValidationDefinition.run does, minus storing the result: Batch.validate would load
            # the dataframe twice, and an in-memory results store would grow with every run.
            from great_expectations.validator.v1_validator import Validator

            result = Validator(
                batch_definition=validator.batch_definition,
                batch_parameters={"dataframe": table},
                result_format=RESULT_FORMAT,
            ).validate_expectation_suite(validator.suite, parameters)
        else:
            from great_expectations.core.run_identifier import RunIdentifier

            run_name = docs_run_name(batch_name)
            _prune_results(validator.context, run_name, keep=DOCS_KEEP_RESULTS - 1)
            checkpoint_result = validator.checkpoint.run(
                batch_parameters={"dataframe": table},
                expectation_parameters=parameters,
                run_id=RunIdentifier(run_name=run_name, run_time=dt.datetime.now(dt.UTC)),
            )
            (result,) = checkpoint_result.run_results.values()
            _remove_empty_folders(docs_dir / "validations")  # GE deletes pruned pages, not their folders
    return _report(result, docs_dir / "index.html" if docs_dir is not None else None)


def docs_run_name(batch_name: str) -> str:
    """The batch name as GE's run name: it becomes a folder and a link, so only [A-Za-z0-9._=-] stay."""
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", batch_name).strip("_") or "batch"


def _validator(docs_dir: Path | None) -> _Validator:
    """The cached validator for docs_dir, built on first use."""
    cached = _VALIDATORS.get(docs_dir)
    if cached is not None and (cached.checkpoint is None or _suite_is_stored(cached.context)):
        return cached  # (a docs_dir wiped since it was built needs its suite stored again: build anew)
    gx = import_great_expectations()
    from great_expectations.execution_engine import pandas_execution_engine

    # GE fingerprints every dataframe under 1 GB (hashing all rows, ~0.15 s per million) only to
    # record it in the result's batch markers; nothing reads it back.
    pandas_execution_engine.HASH_THRESHOLD = 0
    context = gx.get_context(mode="ephemeral", project_config=_context_config(docs_dir))
    suite = context.suites.add_or_update(build_frame_suite(SUITE_NAME))
    batch_definition = (
        context.data_sources.add_pandas(_DATASOURCE)
        .add_dataframe_asset(_ASSET)
        .add_batch_definition_whole_dataframe(_BATCH_DEFINITION)
    )
    checkpoint = None
    if docs_dir is not None:
        definition = context.validation_definitions.add(
            gx.ValidationDefinition(name=SUITE_NAME, data=batch_definition, suite=suite)
        )
        checkpoint = context.checkpoints.add(
            gx.Checkpoint(
                name=f"{SUITE_NAME}_docs",
                validation_definitions=[definition],
                actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs", site_names=[SITE_NAME])],
                result_format=RESULT_FORMAT,
            )
        )
    validator = _Validator(context, suite, batch_definition, checkpoint)
    _VALIDATORS[docs_dir] = validator
    return validator


def _suite_is_stored(context: Any) -> bool:
    """True while the docs_dir's expectations store still holds the suite."""
    from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier

    return bool(context.expectations_store.has_key(ExpectationSuiteIdentifier(name=SUITE_NAME)))


def _context_config(docs_dir: Path | None) -> Any:
    """In-memory stores, no analytics, no progress bars; with docs_dir, suites, results and site inside it."""
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    defaults = InMemoryStoreBackendDefaults(init_temp_docs_sites=False)
    stores = defaults.stores
    sites: dict[str, Any] = {}
    if docs_dir is not None:
        for store_name, folder in (
            (defaults.expectations_store_name, "expectations"),
            (defaults.validation_results_store_name, "validations"),
        ):
            stores[store_name]["store_backend"] = {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir / STORES_FOLDER / folder),
            }
        sites[SITE_NAME] = {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "validation_results_limit": DOCS_KEEP_RESULTS,
            },
        }
    return DataContextConfig(
        store_backend_defaults=defaults,
        stores=stores,
        data_docs_sites=sites,
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )


def _prune_results(context: Any, run_name: str, keep: int) -> None:
    """Drop stored results of this run name (a re-run replaces its entry) and all but the newest `keep`.

    The site builder then deletes the HTML pages of results no longer in the store.
    """
    store = context.validation_results_store
    keys = sorted(store.list_keys(), key=lambda key: key.run_id.run_time, reverse=True)
    others = [key for key in keys if key.run_id.run_name != run_name]
    for key in [key for key in keys if key.run_id.run_name == run_name] + others[max(keep, 0) :]:
        store.remove_key(key)


def _remove_empty_folders(root: Path) -> None:
    """Remove the empty folders below root (bottom-up)."""
    for folder, _, _ in os.walk(root, topdown=False):
        path = Path(folder)
        if path != root and not any(path.iterdir()):
            path.rmdir()


def _report(result: Any, docs_index: Path | None) -> QualityReport:
    """Flatten a GE suite validation result into a QualityReport (failures name the rules.py rule)."""
    failures = []
    for item in result.results:
        if item.success:
            continue
        config = item.expectation_config
        kwargs = config.kwargs
        details = item.result or {}
        failure = {
            "expectation": config.type,
            "column": kwargs.get("column") or ",".join(kwargs.get("column_list") or ()),
            "unexpected_count": details.get("unexpected_count"),
            "partial_unexpected_list": details.get("partial_unexpected_list", []),
            "rule": (config.meta or {}).get("rule"),
        }
        if "details" in details:  # e.g. the column set's {"mismatched": {"missing": [...]}}
            failure["details"] = details["details"]
        elif "observed_value" in details:
            failure["observed_value"] = details["observed_value"]
        if messages := _exception_messages(item.exception_info):
            failure["exception"] = "; ".join(messages)
        failures.append(failure)
    statistics = result.statistics
    return QualityReport(
        success=bool(result.success),
        evaluated_expectations=int(statistics["evaluated_expectations"]),
        successful_expectations=int(statistics["successful_expectations"]),
        failures=failures,
        docs_index=docs_index,
    )


def _exception_messages(info: Any) -> list[str]:
    """Messages of the exceptions GE caught: info is one exception dict, or one per failed metric."""
    if not info:
        return []
    entries = [info] if "raised_exception" in info else list(info.values())
    return [
        str(e.get("exception_message")) for e in entries if isinstance(e, dict) and e.get("raised_exception")
    ]
