"""Alarm episodes from batch predictions: a vehicle is announced when it starts alarming, not every day it alarms.

Episode rule, per vehicle and feature set, applied to as_of dates oldest first, with Q = CELLGUARD_ALERT_QUIET_DAYS:

- A batch prediction with alarm=True at as_of D **continues** the vehicle's episode (silently) when the same
  vehicle's batch prediction for the same feature set alarmed on one of the Q days D−Q … D−1, and an episode
  is recorded as begun on or before that alarm (its latest such episode: re-running an older date after later
  episodes were recorded finds the same answer as the first run). "The prediction at a date" is the latest batch row made for
  that date (any model version, so a new champion does not restart an episode).
- Otherwise it **starts** an episode with first_as_of = D: recorded in the event store's `alerts` table
  (`record_alert`; the same episode recorded again is a no-op) and then notified.
- So an episode ends only after Q days in a row without an alarm (a hysteresis: a vehicle hovering at the
  threshold is announced once, not every time it crosses). With Q = 3: alarm on 3 consecutive days → 1 episode;
  alarm, 2 quiet days, alarm → 1 episode; alarm, 3 quiet days, alarm → 2 episodes. Q = 1 ends an episode on the
  first quiet day. A day that was not scored counts as a quiet day: the DAG scores every day new data arrives,
  so a gap means the vehicle either stopped alarming or went unscored.

Notification: the `alerts` table always holds the episode; with CELLGUARD_ALERT_WEBHOOK set, it is also POSTed
as Slack-compatible JSON (`{"text": …}` plus the same facts under `"cellguard"`), with a timeout and retries.
`notified_at` is stamped only once every configured channel took it. A webhook that fails is logged and the
episode stays `notified_at = null`; every run retries the unnotified episodes of the last RETRY_DAYS days, so a
re-run (or the next day's run) delivers it. Delivery is at least once: a crash between a successful POST and the
stamp sends it again.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

from pipelines.features.daily import as_dates
from pipelines.storage.alerts_zone import publish_alerts
from pipelines.storage.event_store import PredictionEventStore
from pipelines.storage.lake import Lake

log = logging.getLogger(__name__)

SOURCE = "batch"
RETRY_DAYS = 14  # unnotified episodes this many days older than the run's dates are still retried
TIMEOUT_S = 10.0
ATTEMPTS = 3
BACKOFF_S = 1.0  # waits 1 s, then 2 s between attempts
STORE_CHANNEL = "store"  # notified_at stamp when no webhook is configured: the alerts table is the only channel
WEBHOOK_CHANNEL = "webhook"


class WebhookError(RuntimeError):
    """The webhook did not accept a notification after every attempt."""


def redacted(url: str) -> str:
    """The URL's scheme and host only: a webhook's path often holds its secret token."""
    return re.sub(r"^((?:[^:/]*://)?[^/]*)/.*$", r"\1/…", url)


def post_json(url: str, payload: dict, timeout_s: float = TIMEOUT_S, attempts: int = ATTEMPTS,
              backoff_s: float = BACKOFF_S) -> None:
    """POST JSON; retries connection errors, timeouts, 429 and 5xx; raises WebhookError naming the host only."""
    import httpx

    problem = "no attempt made"
    for attempt in range(1, max(1, attempts) + 1):
        try:
            response = httpx.post(url, json=payload, timeout=timeout_s)
        except httpx.HTTPError as error:  # connection refused, DNS, timeout, …
            problem = f"{type(error).__name__}: {error}"
        else:
            if response.status_code < 300:
                return
            problem = f"HTTP {response.status_code} {response.text[:200]!r}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the request itself is refused: sending it again will not help
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise WebhookError(f"webhook {redacted(url)} did not take the notification after {attempt} attempt(s): {problem}")


@dataclass(frozen=True)
class Notifier:
    """Where new episodes go besides the alerts table: an optional webhook."""

    webhook_url: str | None = None
    timeout_s: float = TIMEOUT_S
    attempts: int = ATTEMPTS
    backoff_s: float = BACKOFF_S

    @classmethod
    def from_settings(cls) -> Notifier:
        """The webhook CELLGUARD_ALERT_WEBHOOK names (none if unset)."""
        from pipelines.config import load_settings

        webhook = load_settings().alert_webhook
        return cls(webhook.reveal() if webhook else None)

    @property
    def channel(self) -> str:
        """What `mark_notified` records as the channel."""
        return WEBHOOK_CHANNEL if self.webhook_url else STORE_CHANNEL

    def notify(self, episode: dict) -> None:
        """Deliver one episode to the webhook (nothing to do without one); raises WebhookError."""
        if self.webhook_url:
            post_json(self.webhook_url, alert_payload(episode), self.timeout_s, self.attempts, self.backoff_s)


def alert_payload(episode: dict) -> dict:
    """A Slack-compatible body for a new episode: a readable `text` and the facts as structured fields."""
    first_as_of = _iso(episode["first_as_of"])
    cell = episode.get("suspect_cell")
    text = (f":warning: CellGuard: vehicle {episode['vin']} is likely to raise a cell consistency alarm within "
            f"14 days (as of {first_as_of}): probability {episode['probability']:.2f} (threshold "
            f"{episode['threshold']:.2f}), suspect cell {cell if cell is not None else 'unknown'}, "
            f"model {episode['model_version']} ({episode['feature_set']}).")
    facts = {"event": "alarm_episode_started", "vin": episode["vin"], "feature_set": episode["feature_set"],
             "first_as_of": first_as_of, "probability": float(episode["probability"]),
             "threshold": float(episode["threshold"]), "suspect_cell": cell, "model_version": episode["model_version"]}
    return {"text": text, "cellguard": facts}


def _iso(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


@dataclass
class AlertSummary:
    """What one alerts run did (plain values, so it travels as an XCom)."""

    feature_set: str
    as_of: list[str]
    alarmed: int = 0  # alarmed predictions looked at
    continued: int = 0  # of them, continuing an episode silently
    started: list[dict] = field(default_factory=list)  # {vin, first_as_of} of episodes these dates started
    notified: list[dict] = field(default_factory=list)  # {vin, first_as_of, channel} stamped notified in this run
    failed: list[dict] = field(default_factory=list)  # {vin, first_as_of, error}: left unnotified for a retry

    def to_dict(self) -> dict:
        return asdict(self)

    def message(self) -> str:
        return (f"{self.feature_set} alerts for {', '.join(self.as_of) or 'no dates'}: {self.alarmed} alarmed "
                f"predictions, {len(self.started)} new episode(s), {self.continued} continuing; "
                f"{len(self.notified)} notified, {len(self.failed)} failed (retried next run)")


def latest_batch_predictions(store: PredictionEventStore, as_of: date, feature_set: str) -> dict[str, dict]:
    """Per vin, the latest batch prediction made for as_of with this feature set (any model version)."""
    latest: dict[str, dict] = {}
    for row in store.predictions_between(as_of, as_of):  # ordered by vin, then when made: the last one wins
        if row["source"] == SOURCE and row["feature_set"] == feature_set:
            latest[row["vin"]] = row
    return latest


def last_alarm_days(store: PredictionEventStore, first: date, last: date, feature_set: str) -> dict[str, date]:
    """Per vin, the newest date in first … last whose latest batch prediction (this feature set) alarmed."""
    latest: dict[tuple[str, date], dict] = {}
    for row in store.predictions_between(first, last):  # by as_of, vin, then when made: the last one wins
        if row["source"] == SOURCE and row["feature_set"] == feature_set:
            latest[(row["vin"], row["as_of"])] = row
    alarmed: dict[str, date] = {}
    for (vin, day), row in latest.items():
        if row["alarm"] and day > alarmed.get(vin, date.min):
            alarmed[vin] = day
    return alarmed


def continues_episode(last_alarm: date | None, latest_episode: dict | None, as_of: date, quiet_days: int) -> bool:
    """Whether an alarm at as_of continues an episode: the vehicle alarmed within the quiet_days before, inside an
    episode begun by then."""
    return (last_alarm is not None and 1 <= (as_of - last_alarm).days <= quiet_days and latest_episode is not None
            and latest_episode["first_as_of"] <= last_alarm)


def raise_alerts(as_of_dates: Iterable[date | str], feature_set: str = "full",
                 store: PredictionEventStore | None = None, notifier: Notifier | None = None,
                 now: datetime | None = None, quiet_days: int | None = None) -> AlertSummary:
    """Start an episode for each vehicle that begins alarming at these dates, then notify unnotified episodes."""
    if quiet_days is None:
        from pipelines.config import load_settings

        quiet_days = load_settings().alert_quiet_days
    dates = as_dates(as_of_dates)
    summary = AlertSummary(feature_set=feature_set, as_of=[d.isoformat() for d in dates])
    if not dates:
        return summary
    if store is None:
        from pipelines.storage.event_stores import open_event_store

        store = open_event_store()
    notifier = notifier or Notifier.from_settings()
    now = now or datetime.now(UTC)

    for as_of in dates:
        today = latest_batch_predictions(store, as_of, feature_set)
        recent = last_alarm_days(store, as_of - timedelta(days=quiet_days), as_of - timedelta(days=1), feature_set)
        for vin, prediction in sorted(today.items()):
            if not prediction["alarm"]:
                continue
            summary.alarmed += 1
            last_alarm = recent.get(vin)
            # the episode that was open at the last alarm, not a later one (a re-run of an older date)
            episode = store.open_alert(vin, feature_set, on_or_before=last_alarm) if last_alarm else None
            if continues_episode(last_alarm, episode, as_of, quiet_days):
                summary.continued += 1
                continue
            store.record_alert(vin=vin, feature_set=feature_set, first_as_of=as_of,
                               model_version=prediction["model_version"], probability=prediction["probability"],
                               threshold=prediction["threshold"], suspect_cell=prediction["suspect_cell"],
                               created_at=now)
            summary.started.append({"vin": vin, "first_as_of": as_of.isoformat()})

    # Every unnotified episode of these dates, and earlier ones whose notification failed before.
    for episode in store.alerts_between(dates[0] - timedelta(days=RETRY_DAYS), date.max):
        if episode["feature_set"] != feature_set or episode["notified_at"] is not None:
            continue
        where = {"vin": episode["vin"], "first_as_of": episode["first_as_of"].isoformat()}
        try:
            notifier.notify(episode)
        except Exception as error:  # the episode is stored; a later run retries it
            log.warning("alert for %s (episode from %s) not delivered, left for a retry: %s",
                        where["vin"], where["first_as_of"], error)
            summary.failed.append({**where, "error": str(error)})
            continue
        if store.mark_notified(episode["vin"], feature_set, episode["first_as_of"], datetime.now(UTC),
                               notifier.channel):
            summary.notified.append({**where, "channel": notifier.channel})
    log.info(summary.message())
    return summary


def publish_episodes(as_of_dates: Iterable[date | str], store: PredictionEventStore | None = None,
                     lake: Lake | None = None) -> list[str]:
    """Copy to the lake's alerts zone the episodes a run at these dates may have started or notified."""
    dates = as_dates(as_of_dates)
    if not dates:
        return []
    if store is None:
        from pipelines.storage.event_stores import open_event_store

        store = open_event_store()
    return publish_alerts(lake or Lake.from_settings(), store, dates[0] - timedelta(days=RETRY_DAYS), dates[-1])
