"""One [[remote_write]] endpoint: the history file read forward from a committed position and
pushed as Prometheus remote write 1.0, in a thread of its own (the cycle never waits on the
network).

- **Nothing lost, nothing out of order.** What is sent is what the history file holds, read
  in time order from `state_dir/remote_write/NAME.json` (the time sent up to, written after
  each batch is accepted): an outage is replayed with the original timestamps once the
  receiver is back; a kill -9 resumes from the committed time (at least once: the batch in
  flight may be sent twice, never skipped). Past `max_backlog` (24 h, the history's raw
  retention) the oldest data is skipped, counted in seconds and logged once.
- **Retries as Prometheus retries**: a connection error, a 5xx or a 429 keeps the batch and
  retries after a doubling, jittered backoff (min_backoff to max_backoff), or after the
  receiver's Retry-After (capped); any other 4xx drops the batch (the receiver will never take
  it), counted, logged once per status with the receiver's words (secrets redacted).
- **Bounded**: one batch of at most `max_samples_per_send` samples in memory, at most 4 KiB of
  an answer read; a hung receiver costs its own thread's time, nothing else.
- Metadata (each family's type and help) is sent every `metadata_interval`, as Prometheus does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import re
import threading
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

import urllib3

from .. import threads
from ..config import RemoteWriteSettings
from ..config.values import without_password
from ..model import MetricFamily, counter, gauge
from ..notify.base import credential_forms, redact, retry_after_seconds
from ..statefile import write_json
from ..digest import sha256_hex
from ..tsdb.reader import Reader
from ..tsdb.store import HistoryStore
from . import wire
from .relabel import Labels, Relabel, from_settings, relabel

log = logging.getLogger(__name__)

SPAN = 60.0  # seconds of history read at once (a catch-up reads span after span)
ANSWER_BYTES = 4096  # of a receiver's answer, at most this much is read
MAX_RETRY_AFTER = 300.0
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
LABEL_CACHE = 100_000  # encoded label sets kept between batches, at most
Metadata = Callable[[], Dict[str, List[Dict[str, str]]]]  # the daemon's /api/v1/metadata


def endpoint_name(settings: RemoteWriteSettings) -> str:
    if settings.name:
        return settings.name
    parts = urlsplit(settings.url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def shown_url(url: str) -> str:
    """The URL for logs: no password, no query (a token may ride there)."""
    parts = urlsplit(without_password(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


class Rejected(Exception):
    """The receiver refused the batch for good (a 4xx other than 429)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Retry(Exception):
    def __init__(self, message: str, after: Optional[float] = None):
        super().__init__(message)
        self.after = after


class Endpoint:
    def __init__(self, settings: RemoteWriteSettings, store: HistoryStore, state_dir: str, metadata: Metadata,
                 clock: Callable[[], float] = time.time, jitter: Callable[[], float] = random.random,
                 sleep: Optional[Callable[[float], bool]] = None):
        self.settings = settings
        self.name = endpoint_name(settings)
        self.store = store
        self.metadata = metadata
        self.clock = clock
        self.jitter = jitter
        self.rules: List[Relabel] = from_settings(settings.write_relabel)
        self.external = tuple(sorted(settings.external_labels.items()))
        url = urlsplit(settings.url)  # an error quoting the path keeps a token in its query: each part redacted
        user, password = (settings.basic_auth_username, settings.basic_auth_password) if settings.basic_auth_username \
            else (url.username or "", url.password or "")
        forms = credential_forms(user, password) if user else []  # a receiver echoing our Authorization header
        self.secrets = sorted({s for s in (settings.url, url.password, url.query, settings.basic_auth_password,
                                           settings.bearer_token, *settings.headers.values(), *forms) if s},
                              key=len, reverse=True)
        self._stop = threading.Event()
        self.wake = threading.Event()
        self._sleep = sleep or (lambda seconds: self._stop.wait(seconds))
        self.pool = _pool(settings)
        self.headers = dict(wire.HEADERS, **settings.headers, **_auth(settings))
        self.path = os.path.join(state_dir, "remote_write", re.sub(r"[^A-Za-z0-9_.-]", "_", self.name) + ".json") \
            if state_dir else ""
        self.key = sha256_hex(shown_url(settings.url), 16)  # a new receiver starts anew
        self.sent_until = self._load()
        # counters under Prometheus' names (prometheus_remote_storage_*), read by the cycle's thread
        self.samples = self.failed = self.retried = self.dropped = self.bytes = self.metadata_sent = 0
        self.skipped_seconds = 0.0
        self.pending = 0
        self.up = True
        self._logged: set = set()
        self._last_metadata = 0.0
        self._reader: Optional[Reader] = None
        self._label_cache: Dict[wire.Labels, bytes] = {}  # each series' encoded labels, sent every batch
        self._thread = threads.daemon(self._run, f"remote-write:{self.name}")

    # -- position ------------------------------------------------------------------------------

    def _load(self) -> float:
        """The committed time; a new endpoint (or a new receiver behind the name) starts from now."""
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
            if doc.get("receiver") == self.key and isinstance(doc.get("sent_until"), (int, float)):
                return float(doc["sent_until"])
        except (OSError, ValueError, AttributeError):
            pass
        return max(self.store.last_written, self.clock() - 1.0) if math.isfinite(self.store.last_written) \
            else self.clock() - 1.0

    def _commit(self) -> None:
        if not self.path or self._stop.is_set():  # a closed endpoint's late batch: its successor owns the file
            return
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            error = write_json(self.path, {"receiver": self.key, "sent_until": self.sent_until})
        except OSError as e:
            error = e
        if error:  # a full or read-only disk: sent again after a restart (at least once), never lost
            self._once("commit", "remote write %s: cannot save its position: %s", self.name, error)

    # -- the thread ----------------------------------------------------------------------------

    def start(self) -> "Endpoint":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=2)
        self.pool.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.step():
                    self.wake.wait(5.0)
                    self.wake.clear()
            except Exception as e:  # a bug must not end the thread: log, wait, go on
                self._once(type(e).__name__, "remote write %s: %s: %s", self.name, type(e).__name__, e)
                self._sleep(self.settings.max_backoff)

    def step(self) -> bool:
        """Send what follows the committed time, up to one span; False when nothing is new."""
        newest = self.store.last_written
        if not math.isfinite(newest) or newest <= self.sent_until:
            return False
        floor = self.clock() - self.settings.max_backlog
        if self.sent_until < floor:  # past the cap: the oldest goes, counted and said once
            self.skipped_seconds += floor - self.sent_until
            self._once("backlog", "remote write %s: more than %gs behind; the oldest %.0fs are not sent",
                       self.name, self.settings.max_backlog, floor - self.sent_until)
            self.sent_until = floor
        end = min(newest, self.sent_until + SPAN)
        self._maybe_metadata()
        for batch in self._batches(self.sent_until, end):
            if not self._deliver(batch):
                return True  # stopping
        self.sent_until = end
        self._commit()
        return True

    def _batches(self, start: float, end: float) -> Iterator[List[wire.Series]]:
        """The span's samples as batches of at most max_samples_per_send, series whole where they fit."""
        infos = {i.id: i for i in self.store.index.all()}
        if self._reader is None:  # its own read connection, in this thread
            self._reader = self.store.reader()
        data = self._reader.raw_after(start, end)
        batch: List[wire.Series] = []
        size = 0
        limit = self.settings.max_samples_per_send
        for sid, points in data.items():
            info = infos.get(sid)
            labels = self._labels(info.labels) if info is not None else None
            if labels is None:
                self.dropped += len(points) if info is not None else 0
                continue
            samples = [(int(round(t * 1000)), v) for t, v in points]
            while samples:
                room = limit - size
                batch.append((labels, samples[:room]))
                size += len(samples[:room])
                samples = samples[room:]
                if size >= limit:
                    yield batch
                    batch, size = [], 0
        if batch:
            yield batch

    def _labels(self, stored: Labels) -> Optional[Labels]:
        labels = relabel(self.rules, stored) if self.rules else stored
        if labels is None:
            return None
        if self.external:  # as Prometheus: a series' own label wins over an external one
            own = {k for k, _ in labels}
            labels = tuple(sorted(tuple(labels) + tuple(p for p in self.external if p[0] not in own)))
        return labels

    # -- sending -------------------------------------------------------------------------------

    def _deliver(self, batch: List[wire.Series]) -> bool:
        """Send until accepted or refused for good; False if the agent stops meanwhile."""
        count = sum(len(s) for _, s in batch)
        if len(self._label_cache) > LABEL_CACHE:  # churned series: start over rather than grow
            self._label_cache.clear()
        body = wire.compress(wire.encode(batch, label_cache=self._label_cache))
        self.pending = count
        failures = 0
        while not self._stop.is_set():
            try:
                self._post(body)
                self.samples += count
                self.bytes += len(body)
                self.up = True
                self.pending = 0
                return True
            except Rejected as e:
                self.failed += count
                self.pending = 0
                self._once(f"rejected:{e.status}", "remote write %s: a batch of %d samples refused, dropped: %s",
                           self.name, count, e)
                return True
            except Retry as e:
                self.up = False
                self.retried += count
                failures += 1
                delay = min(self.settings.max_backoff, self.settings.min_backoff * 2 ** min(failures - 1, 30))
                delay *= 0.5 + self.jitter()
                if e.after is not None:
                    delay = max(delay, min(e.after, MAX_RETRY_AFTER))
                if failures == 1:
                    log.warning("remote write %s: %s; retrying (the history keeps what is not sent)", self.name, e)
                if self._sleep(delay):
                    return False
        return False

    def _post(self, body: bytes) -> None:
        try:
            resp = self.pool.request("POST", self.settings.url, body=body, headers=self.headers, preload_content=False,
                                     redirect=False, retries=False,
                                     timeout=urllib3.Timeout(connect=self.settings.timeout, read=self.settings.timeout))
        except urllib3.exceptions.HTTPError as e:
            raise Retry(self._redact(f"{type(e).__name__}: {e}")) from None
        answer = _read_answer(resp, time.monotonic() + self.settings.timeout)
        status = resp.status
        if 200 <= status < 300:
            return
        said = self._redact(answer.decode("utf-8", "replace").strip()[:200])
        if status == 429 or status >= 500:
            raise Retry(f"HTTP {status}: {said}", retry_after_seconds(resp.headers.get("Retry-After"), self.clock()))
        raise Rejected(f"HTTP {status}: {said}", status)

    def _maybe_metadata(self) -> None:
        now = self.clock()
        if now - self._last_metadata < self.settings.metadata_interval:
            return
        self._last_metadata = now
        try:
            doc = self.metadata()
        except Exception:  # no snapshot yet
            return
        rows = [(name, entries[0].get("type", "unknown"), entries[0].get("help", ""))
                for name, entries in sorted(doc.items()) if entries]
        if not rows:
            return
        try:
            self._post(wire.compress(wire.encode((), rows)))
            self.metadata_sent += len(rows)
        except (Retry, Rejected) as e:  # metadata is advisory: the next interval tries again
            self._once("metadata", "remote write %s: metadata not sent: %s", self.name, e)

    def _redact(self, text: str) -> str:
        """Text a receiver or an error wrote, fit for one log line: our secrets out, its control
        characters (a forged second line) shown as escapes."""
        return _CONTROL.sub(lambda m: repr(m.group(0))[1:-1], redact(text, self.secrets))

    def _once(self, key: str, message: str, *args: Any) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.warning(message, *args)

    # -- what the cycle exports ----------------------------------------------------------------

    def lag(self) -> float:
        newest = self.store.last_written
        return max(0.0, newest - self.sent_until) if math.isfinite(newest) else 0.0


def _read_answer(resp: Any, deadline: float) -> bytes:
    """At most ANSWER_BYTES of the answer, by `deadline` (a receiver dripping a byte a second
    holds nothing but this endpoint, and not for long). An answer read whole keeps its
    connection for the next batch; one cut short closes it."""
    chunks: List[bytes] = []
    size = 0
    whole = False
    read = getattr(resp, "read1", None) or (lambda n: resp.read(n))
    try:
        while size < ANSWER_BYTES and time.monotonic() < deadline:
            chunk = read(ANSWER_BYTES - size)
            if not chunk:
                whole = True
                break
            chunks.append(chunk)
            size += len(chunk)
    except (urllib3.exceptions.HTTPError, OSError):
        pass
    if whole:
        resp.release_conn()
    else:
        resp.close()
    return b"".join(chunks)


def _auth(settings: RemoteWriteSettings) -> Dict[str, str]:
    if settings.bearer_token:
        return {"Authorization": f"Bearer {settings.bearer_token}"}
    if settings.basic_auth_username:
        return urllib3.make_headers(basic_auth=f"{settings.basic_auth_username}:{settings.basic_auth_password}")
    parts = urlsplit(settings.url)
    if parts.username:  # credentials in the URL, as Prometheus takes them
        return urllib3.make_headers(basic_auth=f"{parts.username}:{parts.password or ''}")
    return {}


def _pool(settings: RemoteWriteSettings) -> urllib3.PoolManager:
    options: Dict[str, Any] = {"maxsize": 1, "block": False}
    if settings.url.startswith("https"):
        options["cert_reqs"] = "CERT_NONE" if settings.tls_insecure_skip_verify else "CERT_REQUIRED"
        if settings.tls_ca_file:
            options["ca_certs"] = settings.tls_ca_file
        if settings.tls_cert_file:
            options["cert_file"], options["key_file"] = settings.tls_cert_file, settings.tls_key_file or None
        if settings.tls_server_name:
            options["server_hostname"] = options["assert_hostname"] = settings.tls_server_name
    return urllib3.PoolManager(num_pools=1, **options)


class Writers:
    """Every [[remote_write]] endpoint of the running agent. A reload keeps an endpoint whose
    settings did not change (its thread, its counters, its batch in flight) and replaces the rest."""

    def __init__(self, store: HistoryStore, state_dir: str, metadata: Metadata, clock: Callable[[], float] = time.time):
        self.store, self.state_dir, self.metadata, self.clock = store, state_dir, metadata, clock
        self.endpoints: List[Endpoint] = []

    def configure(self, settings: Sequence[RemoteWriteSettings]) -> None:
        kept = {_identity(e.settings): e for e in self.endpoints}
        new = []
        for s in settings:
            same = kept.pop(_identity(s), None)
            new.append(same if same is not None else Endpoint(s, self.store, self.state_dir, self.metadata,
                                                                self.clock).start())
        for gone in kept.values():
            gone.close()
        self.endpoints = new

    def notify(self) -> None:
        """A cycle was written: each endpoint looks for it now rather than at its next poll."""
        for e in self.endpoints:
            e.wake.set()

    def families(self) -> List[MetricFamily]:
        return families(self.endpoints)

    def close(self) -> None:
        for e in self.endpoints:
            e.close()
        self.endpoints = []


def _identity(settings: RemoteWriteSettings) -> str:
    """Settings compared by value (they hold dicts, so they cannot be hashed); never shown."""
    return json.dumps(dataclasses.asdict(settings), sort_keys=True, default=str)


def families(endpoints: Sequence[Endpoint]) -> List[MetricFamily]:
    """Each endpoint's state under Prometheus' names where they exist, labelled remote_name."""
    fams = {
        "sent": counter("prometheus_remote_storage_samples_total", "Samples sent and accepted by the receiver."),
        "failed": counter("prometheus_remote_storage_samples_failed_total",
                          "Samples the receiver refused for good (a 4xx): dropped."),
        "retried": counter("prometheus_remote_storage_samples_retried_total",
                           "Samples sent again after a failure the receiver may recover from (5xx, 429, no answer)."),
        "dropped": counter("prometheus_remote_storage_samples_dropped_total", "Samples write_relabel dropped."),
        "pending": gauge("prometheus_remote_storage_samples_pending", "Samples of the batch being sent."),
        "bytes": counter("prometheus_remote_storage_bytes_total", "Compressed bytes sent and accepted."),
        "metadata": counter("prometheus_remote_storage_metadata_total", "Metadata entries sent."),
        "sent_ts": gauge("prometheus_remote_storage_queue_highest_sent_timestamp_seconds",
                         "The newest sample time the receiver accepted (the committed position)."),
        "lag": gauge("llm_agent_remote_write_lag_seconds",
                     "How far the receiver is behind the history file, in seconds (0: caught up)."),
        "skipped": counter("llm_agent_remote_write_skipped_seconds_total",
                           "Seconds of history never sent: older than max_backlog when their turn came."),
        "up": gauge("llm_agent_remote_write_up", "Whether the last send to the receiver succeeded (1) or not (0)."),
    }
    for e in endpoints:
        lbl = {"remote_name": e.name}
        for key, value in (("sent", e.samples), ("failed", e.failed), ("retried", e.retried), ("dropped", e.dropped),
                           ("pending", e.pending), ("bytes", e.bytes), ("metadata", e.metadata_sent),
                           ("sent_ts", e.sent_until), ("lag", e.lag()), ("skipped", e.skipped_seconds),
                           ("up", 1 if e.up else 0)):
            fams[key].add(lbl, value)
    return [f for f in fams.values() if f.samples]
