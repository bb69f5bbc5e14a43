"""The prediction event store on DynamoDB (CELLGUARD_BACKEND=aws): the same methods as the SQL store, two tables.

`<prefix>predictions`, one item per prediction:
    key         vin (partition) + `<as_of>#["model_version","source","request_id"]` (sort): the prediction key, so
                a vehicle's history is one Query, newest as_of first, and recording a key twice is a failed condition
    by_as_of    GSI: day_shard (partition) + `<as_of>#<vin>#<created_at ms>#<recorded>` (sort): predictions between
                two dates as one range Query per shard, already in the order the API lists them
    unflushed   sparse GSI: unflushed_shard (partition, removed when the row reaches the lake) + recorded (sort):
                what a restarted API still has to write, oldest first
`<prefix>alerts`, one item per alarm episode:
    key         `["vin","feature_set"]` (partition) + first_as_of (sort): a vehicle's latest episode is one Query
    by_start    GSI: one constant partition (an episode per vehicle and week at most) + `<first_as_of>#<episode>`

Why shards: batch inference writes the whole fleet's predictions for one as_of at once, and one GSI partition key
takes about 1,000 writes a second, so the two prediction GSIs spread their items over SHARDS keys (by VIN) and a
read queries every shard and merges. `recorded` (write time in ns, then the row's place in its call) stands in for
the SQL store's auto-increment id: arrival order across API workers.

Writes are conditional, because "a key recorded twice keeps its first row" and "how many rows were new" need them:
BatchWriteItem cannot carry a condition (it would overwrite the first row, and two racing writers would both count
the row as new), so rows go in TransactWriteItems of up to 100 puts, each on `attribute_not_exists`. A transaction
cancelled because some rows exist already is retried without them; one cancelled by a conflicting transaction or
throttling is retried with backoff, and botocore resends a lost request with the same idempotency token.
`mark_flushed` stamps rows the same way (an update conditioned on no earlier stamp).

Reads: a vehicle's history and its alarm episodes are strongly consistent Queries on the tables. The GSIs
(predictions by date, unflushed rows, episodes by start date) are eventually consistent, as every DynamoDB GSI is:
a row recorded a moment ago may be missing from them for a second or so.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pyarrow as pa

from pipelines.config import Settings, load_settings
from pipelines.schema import PREDICTION_SCHEMA
from pipelines.storage.aws import aws_client
from pipelines.storage.event_store import PREDICTION_KEY, PredictionKey, prediction_table

SHARDS = 8
TRANSACTION_LIMIT = 100  # DynamoDB's most actions in one TransactWriteItems
MAX_CONFLICT_RETRIES = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_AFTER_DATE = "$"  # sorts after '#', so "<date>$" bounds every "<date>#…" sort key from above


def shard_of(vin: str) -> str:
    """The GSI partition key of a vehicle's predictions: one of SHARDS, fixed by the VIN."""
    return f"s{zlib.crc32(vin.encode()) % SHARDS}"


def _prediction_sort_key(as_of: date, model_version: str, source: str, request_id: str) -> str:
    """The sort key: as_of first (newest-first queries), then the rest of the key as JSON (no separator clash)."""
    return f"{as_of.isoformat()}#{json.dumps([model_version, source, request_id])}"


def _episode(vin: str, feature_set: str) -> str:
    return json.dumps([vin, feature_set])


def _ms(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _from_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _utc(moment: datetime) -> datetime:
    """Aware UTC (a naive datetime means UTC, as in the SQL store)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _number(value: float | int) -> dict[str, str]:
    """A DynamoDB number that reads back as the same float (repr round-trips exactly)."""
    return {"N": repr(float(value)) if isinstance(value, float) else str(int(value))}


# ---------------------------------------------------------------------------------------------- items


def prediction_item(row: dict, recorded: str) -> dict[str, dict]:
    """One contract row as a DynamoDB item (low-level attribute values)."""
    as_of, vin = row["as_of"], row["vin"]
    created_ms = _ms(_utc(row["created_at"]))
    item = {
        "vin": {"S": vin},
        "prediction_key": {"S": _prediction_sort_key(as_of, row["model_version"], row["source"], row["request_id"])},
        "as_of": {"S": as_of.isoformat()},
        "model_version": {"S": row["model_version"]},
        "feature_set": {"S": row["feature_set"]},
        "probability": _number(row["probability"]),
        "alarm": {"BOOL": bool(row["alarm"])},
        "threshold": _number(row["threshold"]),
        "source": {"S": row["source"]},
        "request_id": {"S": row["request_id"]},
        "created_at_ms": {"N": str(created_ms)},
        "recorded": {"S": recorded},
        "day_shard": {"S": shard_of(vin)},
        "day_sort": {"S": f"{as_of.isoformat()}#{vin}#{created_ms:015d}#{recorded}"},
        "unflushed_shard": {"S": shard_of(vin)},
    }
    if row["suspect_cell"] is not None:
        item["suspect_cell"] = {"N": str(int(row["suspect_cell"]))}
    if row["reasons"] is not None:  # JSON text, as in the SQL store: a missing day's feature value is NaN
        item["reasons"] = {"S": json.dumps(row["reasons"])}
    return item


def prediction_row(item: dict[str, dict]) -> dict:
    """A stored item as a contract dict, like the SQL store returns it."""
    return {
        "vin": item["vin"]["S"],
        "as_of": date.fromisoformat(item["as_of"]["S"]),
        "model_version": item["model_version"]["S"],
        "feature_set": item["feature_set"]["S"],
        "probability": float(item["probability"]["N"]),
        "alarm": item["alarm"]["BOOL"],
        "threshold": float(item["threshold"]["N"]),
        "suspect_cell": int(item["suspect_cell"]["N"]) if "suspect_cell" in item else None,
        "reasons": json.loads(item["reasons"]["S"]) if "reasons" in item else None,
        "source": item["source"]["S"],
        "request_id": item["request_id"]["S"],
        "created_at": _from_ms(int(item["created_at_ms"]["N"])),
    }


def _prediction_order(item: dict[str, dict]) -> tuple:
    """(as_of, created_at, recorded): the SQL store's order, as_of then time made then arrival."""
    return item["as_of"]["S"], int(item["created_at_ms"]["N"]), item["recorded"]["S"]


def alert_row(item: dict[str, dict]) -> dict:
    """A stored episode as the SQL store returns it."""
    return {
        "vin": item["vin"]["S"],
        "feature_set": item["feature_set"]["S"],
        "first_as_of": date.fromisoformat(item["first_as_of"]["S"]),
        "model_version": item["model_version"]["S"],
        "probability": float(item["probability"]["N"]),
        "threshold": float(item["threshold"]["N"]),
        "suspect_cell": int(item["suspect_cell"]["N"]) if "suspect_cell" in item else None,
        "created_at": datetime.fromisoformat(item["created_at"]["S"]),
        "notified_at": datetime.fromisoformat(item["notified_at"]["S"]) if "notified_at" in item else None,
        "channel": item["channel"]["S"] if "channel" in item else None,
    }


# ---------------------------------------------------------------------------------------------- tables


def table_definitions(prefix: str) -> dict[str, dict[str, Any]]:
    """CreateTable arguments of the two tables (on-demand capacity)."""
    def attributes(*names: str) -> list[dict[str, str]]:
        return [{"AttributeName": n, "AttributeType": "S"} for n in names]

    def key(partition: str, sort: str) -> list[dict[str, str]]:
        return [{"AttributeName": partition, "KeyType": "HASH"}, {"AttributeName": sort, "KeyType": "RANGE"}]

    def index(name: str, partition: str, sort: str) -> dict[str, Any]:
        return {"IndexName": name, "KeySchema": key(partition, sort), "Projection": {"ProjectionType": "ALL"}}

    return {
        f"{prefix}predictions": {
            "AttributeDefinitions": attributes("vin", "prediction_key", "day_shard", "day_sort", "unflushed_shard", "recorded"),
            "KeySchema": key("vin", "prediction_key"),
            "GlobalSecondaryIndexes": [index("by_as_of", "day_shard", "day_sort"),
                                       index("unflushed", "unflushed_shard", "recorded")],
            "BillingMode": "PAY_PER_REQUEST",
        },
        f"{prefix}alerts": {
            "AttributeDefinitions": attributes("episode", "first_as_of", "all_alerts", "started"),
            "KeySchema": key("episode", "first_as_of"),
            "GlobalSecondaryIndexes": [index("by_start", "all_alerts", "started")],
            "BillingMode": "PAY_PER_REQUEST",
        },
    }


def ensure_tables(client: Any, prefix: str) -> None:
    """Create the store's tables if missing and wait until they are active (several processes may race)."""
    for name, definition in table_definitions(prefix).items():
        try:
            status = client.describe_table(TableName=name)["Table"]["TableStatus"]
        except client.exceptions.ResourceNotFoundException:
            with contextlib.suppress(client.exceptions.ResourceInUseException):  # another process is creating it
                client.create_table(TableName=name, **definition)
            status = "CREATING"
        if status != "ACTIVE":
            client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})


# ---------------------------------------------------------------------------------------------- store


class DynamoDbEventStore:
    """Predictions and alerts in DynamoDB, with the SQL store's methods and guarantees (pipelines.storage.event_store)."""

    def __init__(self, client: Any, table_prefix: str = "cellguard-"):
        self.client = client
        self.predictions_table = f"{table_prefix}predictions"
        self.alerts_table = f"{table_prefix}alerts"
        ensure_tables(client, table_prefix)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> DynamoDbEventStore:
        """The store the settings name: tables CELLGUARD_DYNAMODB_TABLE_PREFIX* at the configured endpoint."""
        settings = settings or load_settings()
        return cls(aws_client("dynamodb", settings), settings.dynamodb_table_prefix)

    def close(self) -> None:
        """Nothing to release (boto3 clients pool their own connections); here for the SQL store's interface."""

    # ------------------------------------------------------------------ conditional writes

    def _transact(self, actions: list[dict]) -> int:
        """Run conditional writes, up to 100 per transaction; returns how many took effect."""
        return sum(self._transact_chunk(actions[start:start + TRANSACTION_LIMIT])
                   for start in range(0, len(actions), TRANSACTION_LIMIT))

    def _transact_chunk(self, pending: list[dict]) -> int:
        """One transaction, sent again without the writes whose condition failed (the row exists, or was stamped).

        A single write (an API worker's one prediction, or the last one left) goes alone, as a plain conditional
        write: half a transaction's cost."""
        conflicts = 0
        while len(pending) > 1:
            try:
                self.client.transact_write_items(TransactItems=pending)
                return len(pending)
            except self.client.exceptions.TransactionCanceledException as error:
                reasons = error.response.get("CancellationReasons", [])
                failed = {i for i, reason in enumerate(reasons) if reason.get("Code") == "ConditionalCheckFailed"}
                if failed:
                    pending = [action for i, action in enumerate(pending) if i not in failed]
                    continue
                conflicts += 1  # another transaction on the same items, or throttling
                if conflicts > MAX_CONFLICT_RETRIES:
                    raise
                time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** conflicts)))
        return self._write_one(pending[0]) if pending else 0

    def _write_one(self, action: dict) -> int:
        """One conditional write as a plain PutItem or UpdateItem; 1 if it took effect."""
        (kind, arguments), = action.items()
        write = self.client.put_item if kind == "Put" else self.client.update_item
        try:
            write(**arguments)
        except self.client.exceptions.ConditionalCheckFailedException:
            return 0
        return 1

    # ------------------------------------------------------------------ predictions

    def record_predictions(self, rows: list[dict] | pa.Table) -> int:
        """Store predictions; a key already stored is left unchanged. Returns how many rows were new."""
        table = prediction_table(rows)
        if table.num_rows == 0:
            return 0
        now_ns = time.time_ns()
        actions, seen = [], set()
        for position, row in enumerate(table.to_pylist()):
            key = tuple(row[name] for name in PREDICTION_KEY)
            if key in seen:
                continue  # a repeated key in one call: the first row is the one stored
            seen.add(key)
            actions.append({"Put": {"TableName": self.predictions_table,
                                    "Item": prediction_item(row, f"{now_ns:020d}-{position:06d}"),
                                    "ConditionExpression": "attribute_not_exists(vin)"}})
        return self._transact(actions)

    def _query(self, **arguments: Any) -> Iterator[dict]:
        """Every item a Query returns, page after page."""
        for page in self.client.get_paginator("query").paginate(**arguments):
            yield from page["Items"]

    def unflushed(self, limit: int | None = None) -> pa.Table:
        """Predictions not yet in the lake, oldest first, in PREDICTION_SCHEMA."""
        items = []
        for shard in range(SHARDS):
            arguments = {"TableName": self.predictions_table, "IndexName": "unflushed",
                         "KeyConditionExpression": "unflushed_shard = :shard",
                         "ExpressionAttributeValues": {":shard": {"S": f"s{shard}"}}}
            for count, item in enumerate(self._query(**arguments), start=1):
                items.append(item)
                if limit is not None and count >= limit:
                    break  # each shard is in arrival order: no more than `limit` of it can be among the oldest
        items.sort(key=lambda item: item["recorded"]["S"])
        rows = [prediction_row(item) for item in items[:limit]]
        return pa.Table.from_pylist(rows, schema=PREDICTION_SCHEMA)

    def mark_flushed(self, keys: Iterable[PredictionKey], at: datetime) -> None:
        """Stamp predictions as written to the lake (a row already stamped keeps its first stamp)."""
        stamp = _utc(at).isoformat()
        actions = []
        for key in dict.fromkeys(tuple(k) for k in keys):  # one action per item: a transaction refuses two
            vin, as_of, model_version, source, request_id = key
            actions.append({"Update": {
                "TableName": self.predictions_table,
                "Key": {"vin": {"S": vin}, "prediction_key": {"S": _prediction_sort_key(as_of, model_version, source, request_id)}},
                "UpdateExpression": "SET flushed_at = :at REMOVE unflushed_shard",
                "ConditionExpression": "attribute_exists(vin) AND attribute_not_exists(flushed_at)",
                "ExpressionAttributeValues": {":at": {"S": stamp}}}})
        self._transact(actions)

    def flushed_at(self, key: PredictionKey) -> datetime | None:
        """When a prediction reached the lake (None if not yet, or unknown)."""
        vin, as_of, model_version, source, request_id = key
        item = self.client.get_item(TableName=self.predictions_table, ConsistentRead=True, Key={
            "vin": {"S": vin}, "prediction_key": {"S": _prediction_sort_key(as_of, model_version, source, request_id)}}
        ).get("Item", {})
        return datetime.fromisoformat(item["flushed_at"]["S"]) if "flushed_at" in item else None

    def predictions_for_vin(self, vin: str, limit: int = 100) -> list[dict]:
        """A vehicle's latest predictions: newest as_of first, newest made first within a date."""
        items: list[dict] = []
        boundary = None  # the as_of of the limit-th item: every item of that date must be read before sorting
        for item in self._query(TableName=self.predictions_table, KeyConditionExpression="vin = :vin",
                                ExpressionAttributeValues={":vin": {"S": vin}}, ScanIndexForward=False,
                                ConsistentRead=True):  # the API's replay check reads what it just wrote
            if boundary is not None and item["as_of"]["S"] < boundary:
                break
            items.append(item)
            if boundary is None and len(items) >= limit:
                boundary = item["as_of"]["S"]
        items.sort(key=_prediction_order, reverse=True)
        return [prediction_row(item) for item in items[:limit]]

    def api_predictions(self, keys: Iterable[tuple[str, date, str]]) -> list[dict]:
        """The API's predictions made for these (vin, as_of, request id), in the order recorded: what a replay returns."""
        wanted = set(keys)
        items = []
        for vin, as_of in sorted({(vin, as_of) for vin, as_of, _ in wanted}):  # one query per vehicle and date
            items += self._query(
                TableName=self.predictions_table, ConsistentRead=True,  # the replay check reads what it just wrote
                KeyConditionExpression="vin = :vin AND begins_with(prediction_key, :day)",
                ExpressionAttributeValues={":vin": {"S": vin}, ":day": {"S": f"{as_of.isoformat()}#"}})
        rows = [prediction_row(item) for item in sorted(items, key=lambda item: item["recorded"]["S"])]  # arrival
        return [row for row in rows if row["source"] == "api" and (row["vin"], row["as_of"], row["request_id"]) in wanted]

    def predictions_between(self, first: date, last: date, alarm_only: bool = False) -> list[dict]:
        """Predictions with as_of in [first, last] (only alarms if asked), by as_of, vin, then when made."""
        items = []
        for shard in range(SHARDS):
            arguments: dict[str, Any] = {
                "TableName": self.predictions_table, "IndexName": "by_as_of",
                "KeyConditionExpression": "day_shard = :shard AND day_sort BETWEEN :first AND :last",
                "ExpressionAttributeValues": {":shard": {"S": f"s{shard}"}, ":first": {"S": f"{first.isoformat()}#"},
                                              ":last": {"S": f"{last.isoformat()}{_AFTER_DATE}"}}}
            if alarm_only:
                arguments["FilterExpression"] = "alarm = :alarm"
                arguments["ExpressionAttributeValues"][":alarm"] = {"BOOL": True}
            items.extend(self._query(**arguments))
        items.sort(key=lambda item: item["day_sort"]["S"])
        return [prediction_row(item) for item in items]

    # ------------------------------------------------------------------ alerts

    def record_alert(self, *, vin: str, feature_set: str, first_as_of: date, model_version: str, probability: float,
                     threshold: float, suspect_cell: int | None = None, created_at: datetime | None = None) -> bool:
        """Store the start of an alarm episode; False if that episode (vin, feature_set, first_as_of) exists."""
        episode = _episode(vin, feature_set)
        item = {
            "episode": {"S": episode}, "first_as_of": {"S": first_as_of.isoformat()}, "vin": {"S": vin},
            "feature_set": {"S": feature_set}, "model_version": {"S": model_version},
            "probability": _number(probability), "threshold": _number(threshold),
            "created_at": {"S": _utc(created_at or datetime.now(UTC)).isoformat()},
            "all_alerts": {"S": "alerts"}, "started": {"S": f"{first_as_of.isoformat()}#{episode}"},
        }
        if suspect_cell is not None:
            item["suspect_cell"] = {"N": str(int(suspect_cell))}
        try:
            self.client.put_item(TableName=self.alerts_table, Item=item, ConditionExpression="attribute_not_exists(episode)")
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def open_alert(self, vin: str, feature_set: str, on_or_before: date | None = None) -> dict | None:
        """The vehicle's latest alarm episode for a feature set (begun on or before a date, if given; None if
        there is none)."""
        condition, values = "episode = :episode", {":episode": {"S": _episode(vin, feature_set)}}
        if on_or_before is not None:
            condition += " AND first_as_of <= :last"
            values[":last"] = {"S": on_or_before.isoformat()}
        items = self.client.query(TableName=self.alerts_table, KeyConditionExpression=condition,
                                  ExpressionAttributeValues=values, ScanIndexForward=False, Limit=1,
                                  ConsistentRead=True)["Items"]
        return alert_row(items[0]) if items else None

    def mark_notified(self, vin: str, feature_set: str, first_as_of: date, at: datetime, channel: str) -> bool:
        """Stamp an episode as notified; False if it does not exist or was notified already (notify once)."""
        try:
            self.client.update_item(
                TableName=self.alerts_table,
                Key={"episode": {"S": _episode(vin, feature_set)}, "first_as_of": {"S": first_as_of.isoformat()}},
                UpdateExpression="SET notified_at = :at, channel = :channel",
                ConditionExpression="attribute_exists(episode) AND attribute_not_exists(notified_at)",
                ExpressionAttributeValues={":at": {"S": _utc(at).isoformat()}, ":channel": {"S": channel}})
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def alerts_between(self, first: date, last: date) -> list[dict]:
        """Episodes that started in [first, last], by start date, vin, feature set."""
        items = self._query(TableName=self.alerts_table, IndexName="by_start",
                            KeyConditionExpression="all_alerts = :all AND started BETWEEN :first AND :last",
                            ExpressionAttributeValues={":all": {"S": "alerts"}, ":first": {"S": f"{first.isoformat()}#"},
                                                       ":last": {"S": f"{last.isoformat()}{_AFTER_DATE}"}})
        rows = [alert_row(item) for item in items]
        return sorted(rows, key=lambda row: (row["first_as_of"], row["vin"], row["feature_set"]))
