"""The champion model of each served feature set, swapped whole when the registry's champion pointer moves.

A new champion is loaded completely before one reference (an immutable mapping) is replaced, so a request
reads either the old mapping or the new one, and keeps the model object it started with until it ends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from pipelines.serving.model_loading import LoadedModel, load_registered
from pipelines.storage.lake import Lake
from pipelines.training import registry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Swap:
    """One champion change a refresh made."""

    feature_set: str
    previous: str | None
    version: str


class ChampionModels:
    """The loaded champions of some feature sets; `get` never blocks, `refresh` loads and swaps."""

    def __init__(self, lake: Lake, feature_sets: Sequence[str], threads: int | None = None):
        """threads: XGBoost threads per scoring call (None: the library's default, every core). A server scoring
        small matrices on many request threads wants 1: waking a team of threads costs more than the work."""
        if not feature_sets:
            raise ValueError("serve at least one feature set")
        self.lake, self.threads = lake, threads
        self.feature_sets = tuple(dict.fromkeys(feature_sets))
        self._current: Mapping[str, LoadedModel] = MappingProxyType({})
        self._problems: Mapping[str, str] = MappingProxyType({})
        self._refreshing = threading.Lock()  # one refresh at a time; readers never take it

    def get(self, feature_set: str) -> LoadedModel | None:
        """The champion now serving a feature set, or None before one was loaded."""
        return self._current.get(feature_set)

    def unavailable_reason(self, feature_set: str) -> str:
        """Why a feature set has no model to serve, in words an operator can act on."""
        problem = self._problems.get(feature_set)
        return problem or f"no champion for {feature_set}: run bms_training"

    def refresh(self) -> list[Swap]:
        """Load every champion whose pointer moved since the last refresh and swap it in; returns the swaps."""
        swaps = []
        with self._refreshing:
            for feature_set in self.feature_sets:
                try:
                    swap = self._refresh_one(feature_set)
                except Exception as error:  # a bad version or a lake hiccup must not stop the others or the server
                    self._note(feature_set, f"champion of {feature_set} could not be loaded: {error}")
                    log.warning("%s: keeping %s; %s", feature_set, self._serving(feature_set), error)
                    continue
                if swap:
                    swaps.append(swap)
        return swaps

    def _refresh_one(self, feature_set: str) -> Swap | None:
        pointer = registry.champion_pointer(self.lake, feature_set)
        current = self.get(feature_set)
        if pointer is None or (current is not None and current.version == pointer["version"]):
            self._note(feature_set, None)
            return None
        loaded = load_registered(self.lake, pointer["version"])
        if loaded.feature_set != feature_set:
            raise ValueError(f"the {feature_set} champion pointer names {loaded.version}, "
                             f"a {loaded.feature_set} model")
        if self.threads:
            loaded.model.booster.set_param({"nthread": self.threads})  # before any request can see it
        self._current = MappingProxyType({**self._current, feature_set: loaded})
        self._note(feature_set, None)
        previous = current.version if current else None
        log.info("%s: now serving %s (was %s)", feature_set, loaded.version, previous or "nothing")
        return Swap(feature_set, previous, loaded.version)

    def _note(self, feature_set: str, problem: str | None) -> None:
        problems = {k: v for k, v in self._problems.items() if k != feature_set}
        if problem:
            problems[feature_set] = problem
        self._problems = MappingProxyType(problems)

    def _serving(self, feature_set: str) -> str:
        current = self.get(feature_set)
        return current.version if current else "nothing"


class ChampionWatcher:
    """A daemon thread that refreshes the champions at once, then every `interval_s` seconds until stopped."""

    def __init__(self, champions: ChampionModels, interval_s: float):
        if not interval_s > 0:
            raise ValueError(f"champion poll interval {interval_s!r}: must be more than 0 seconds")
        self.champions = champions
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="champion-watcher", daemon=True)

    def start(self) -> None:
        """Begin polling the champion pointers."""
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop polling; waits for a load in progress to end."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.champions.refresh()
            self._stop.wait(self.interval_s)
