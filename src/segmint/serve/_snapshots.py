"""In-memory snapshots of the latest runs, from which ``GET /v1/decide`` answers.

A :class:`Snapshot` is built by a handful of set-based queries (one per segmentation's
latest run, the latest recommendation batch run, the campaign assignments, the
identities, the users, the latest CLV and churn predictions, the people without
personalization consent) into compact arrays: users are a sorted byte-string array (a
binary search finds a user's row), each segmentation an ``int16`` array of segment codes
per user, each campaign an ``int8`` array of arm codes, recommendations three
``users x depth`` arrays (item codes, scores, reason codes), the predictions one
``users x 6`` ``float32`` array (NaN: no score), and a boolean per user: no
personalization (``privacy.personalization``: a revoked ``personalization`` consent under
opt_out, no granted one under opt_in). A request reads a snapshot and never the store.

:class:`SnapshotWorker` polls a cheap fingerprint of the store (latest run ids, counts)
every few seconds and, when it changed, builds a new snapshot beside the old one and
swaps it in with one reference assignment: a request sees the old snapshot or the new
one, never half of each.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from datetime import time as dtime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from segmint._playbook import ANY_SEGMENT, CampaignSpec, Playbook, PromotionTrigger, Strategy
from segmint.serve._periodic import Periodic
from segmint.store import (
    completed,
    latest_run_sql,
    latest_runs_sql,
    lit,
    no_personalization_sql,
    table_exists,
)

__all__ = [
    "CampaignView",
    "SegmentationView",
    "Snapshot",
    "SnapshotWorker",
    "ValueView",
    "build_snapshot",
]

log = logging.getLogger("segmint.serve.decide")

NO_CODE = -1


@dataclass(frozen=True)
class SegmentationView:
    """One segmentation's latest run: a segment code per user and the strategy of each
    segment (None when the playbook has none for it)."""

    name: str
    run_id: str
    segments: tuple[str, ...]
    codes: np.ndarray  # int16 per user row; NO_CODE when the user is not in the run
    strategies: tuple[tuple[str, Strategy] | None, ...]  # per segment code

    def segment_of(self, row: int) -> int:
        return int(self.codes[row]) if row >= 0 else NO_CODE


@dataclass(frozen=True)
class CampaignView:
    """A playbook campaign's assignments: an arm code per user (NO_CODE: not assigned)."""

    name: str
    spec: CampaignSpec
    arms: tuple[str, ...]
    control: str
    codes: np.ndarray  # int8 per user row
    carries_ui: bool
    expires_at: datetime | None


VALUE_FIELDS = ("clv", "clv_low", "clv_high", "p_alive", "churn_risk", "churn_risk_change")
"""The prediction columns a decision carries, in the order of :attr:`ValueView.values`."""


@dataclass(frozen=True)
class ValueView:
    """The latest CLV run and churn run: a row of :data:`VALUE_FIELDS` per user (NaN
    where the user has no score, or no run of that kind exists)."""

    clv_run_id: str | None
    clv_as_of: datetime | None
    churn_run_id: str | None
    churn_as_of: datetime | None
    values: np.ndarray  # float32 users x len(VALUE_FIELDS)
    scored: np.ndarray  # bool per user row: in either run

    def of(self, row: int) -> dict[str, Any] | None:
        """The user's value block (None when neither run scored them)."""
        if row < 0 or row >= self.scored.size or not self.scored[row]:
            return None
        out: dict[str, Any] = {
            name: (None if v != v else round(float(v), 2 if name.startswith("clv") else 4))
            for name, v in zip(VALUE_FIELDS, self.values[row].tolist(), strict=True)
        }
        out.update(
            as_of=self.clv_as_of,
            run_id=self.clv_run_id,
            churn_as_of=self.churn_as_of,
            churn_run_id=self.churn_run_id,
        )
        return out


@dataclass(frozen=True)
class Snapshot:
    """Everything a decision needs, read from the store at ``built_at``."""

    snapshot_id: str
    built_at: datetime
    fingerprint: tuple[Any, ...]
    playbook: Playbook
    user_keys: np.ndarray  # sorted utf-8 user ids ('S')
    user_rows: np.ndarray  # int32: the row of user_keys[i]
    anon_keys: np.ndarray  # sorted utf-8 anonymous ids ('S')
    anon_users: np.ndarray  # utf-8 user id of anon_keys[i] ('S')
    segmentations: tuple[SegmentationView, ...]
    campaigns: tuple[CampaignView, ...]
    rec_run_id: str | None
    rec_items: np.ndarray  # int32 users x depth; NO_CODE past a user's list
    rec_scores: np.ndarray  # float32 users x depth
    rec_reasons: np.ndarray  # int16 users x depth
    items: tuple[str, ...]
    titles: tuple[str | None, ...]
    reasons: tuple[str, ...]
    popular: tuple[tuple[str, str | None, float], ...]  # (item_id, title, score)
    # bool per user row: no personalization consent (empty: everyone may be personalized)
    impersonal: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    value: ValueView | None = None  # None: no prediction run in the store
    personalization: str = "opt_out"
    build_seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return int(self.user_keys.size)

    def row_of(self, user_id: str) -> int:
        """The user's row, or -1 for a user the snapshot does not know."""
        return _find(self.user_keys, self.user_rows, user_id)

    def personalized(self, row: int) -> bool:
        """Whether the user of ``row`` may get personalized content (consent)."""
        return row >= 0 and not (row < self.impersonal.size and self.impersonal[row])

    def user_of_anonymous(self, anonymous_id: str) -> str | None:
        """The user id an anonymous id was stitched to (identify/alias), or None."""
        keys = self.anon_keys
        if keys.size == 0:
            return None
        key = anonymous_id.encode("utf-8")
        if len(key) > keys.dtype.itemsize:
            return None
        pos = int(np.searchsorted(keys, key))
        if pos < keys.size and keys[pos] == key:
            return bytes(self.anon_users[pos]).decode("utf-8")
        return None

    def nbytes(self) -> int:
        """Bytes held by the snapshot's arrays (the bulk of its memory)."""
        arrays = [
            self.user_keys,
            self.user_rows,
            self.anon_keys,
            self.anon_users,
            self.rec_items,
            self.rec_scores,
            self.rec_reasons,
        ]
        arrays += [s.codes for s in self.segmentations] + [c.codes for c in self.campaigns]
        if self.value is not None:
            arrays += [self.value.values, self.value.scored]
        return int(sum(a.nbytes for a in arrays))


def _find(keys: np.ndarray, rows: np.ndarray, user_id: str) -> int:
    if keys.size == 0:
        return -1
    key = user_id.encode("utf-8")
    if len(key) > keys.dtype.itemsize:  # longer than every stored id: not there
        return -1
    pos = int(np.searchsorted(keys, key))
    if pos < keys.size and keys[pos] == key:
        return int(rows[pos])
    return -1


# -- building ---------------------------------------------------------------------------


def _bytes_array(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A string column as a numpy fixed-width utf-8 byte-string array."""
    if len(column) == 0:
        return np.array([], dtype="S1")
    binary = pc.cast(column, pa.binary())
    return np.asarray(binary.to_numpy(zero_copy_only=False), dtype="S")


def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
    col = table.column(name)
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        col = pc.cast(col, pa.string())
    return col


def _rows(users: pa.ChunkedArray | pa.Array, ids: pa.ChunkedArray) -> np.ndarray:
    """Each of ``ids``' row in ``users`` (-1 when absent), vectorised."""
    found = pc.index_in(ids, value_set=users)
    return np.asarray(found.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def _codes(values: pa.ChunkedArray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Dictionary codes of a string column and its distinct values."""
    encoded = pc.dictionary_encode(values).combine_chunks()
    codes = np.asarray(encoded.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return codes, tuple(str(v) for v in encoded.dictionary.to_pylist())


class _Reader:
    """The store, read under the service's store lock one query at a time (so requests
    that need the store, e.g. the tracking endpoints, wait for one query, not a build)."""

    def __init__(self, hold: Hold) -> None:
        self.hold = hold
        self._tables: dict[str, bool] = {}

    def has(self, table: str) -> bool:
        if table not in self._tables:
            with self.hold() as store:
                self._tables[table] = table_exists(store, table)
        return self._tables[table]

    def arrow(self, sql: str) -> pa.Table:
        with self.hold() as store:
            return store.arrow(sql)

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        with self.hold() as store:
            frame = store.query(sql)
        return [tuple(r) for r in frame.itertuples(index=False)]

    def scalar(self, sql: str) -> Any:
        with self.hold() as store:
            return store.scalar(sql)


def fingerprint(reader: _Reader) -> tuple[Any, ...]:
    """What a snapshot was built from, in a few cheap queries: the latest run of every
    segmentation, the latest recommendation batch run and the latest CLV and churn runs
    (``runs``), then the size and
    newest row of the campaign assignments, identities and users (``people``), then the
    size and newest row of the personalization consents (``consent``)."""
    runs: list[Any] = []
    if reader.has("segment_runs"):
        runs += reader.query(latest_runs_sql())
    if reader.has("recommendation_runs"):
        runs.append(reader.scalar(latest_run_sql("recommendation", kind="batch")))
    if reader.has("predict_runs"):
        runs += [reader.scalar(latest_run_sql("prediction", kind=k)) for k in ("clv", "churn")]
    if reader.has("campaign_assignments"):
        runs += reader.query(
            "SELECT count(*), CAST(max(assigned_at) AS VARCHAR) FROM campaign_assignments"
        )
    people: list[Any] = [reader.scalar("SELECT count(*) FROM users")]
    if reader.has("identities"):
        people += reader.query("SELECT count(*), CAST(max(linked_at) AS VARCHAR) FROM identities")
    consent = reader.query(
        "SELECT count(*), CAST(max(coalesce(recorded_at, ts)) AS VARCHAR) FROM consents "
        "WHERE purpose = 'personalization'"
    )
    return (tuple(map(str, runs)), tuple(map(str, people)), tuple(map(str, consent)))


def _impersonal(reader: _Reader, users: pa.Array, mode: str) -> np.ndarray:
    """A bool per user row: the user may not get personalized content (one query)."""
    table = reader.arrow(no_personalization_sql(mode))
    rows = _rows(users, _column(table, "user_id"))
    out = np.zeros(len(users), dtype=bool)
    out[rows[rows >= 0]] = True
    return out


def _strategy_keys(
    reader: _Reader, playbook: Playbook, name: str, run_id: str, segments: tuple[str, ...]
) -> dict[str, str]:
    """Segment -> strategy key, with renamed clusters followed (segmint.campaigns)."""
    from segmint.campaigns import resolve_segments

    with reader.hold() as store:
        resolution = resolve_segments(store, playbook, name, run_id, list(segments))
    return resolution.strategy_keys()


def _segmentation(
    reader: _Reader, playbook: Playbook, users: pa.ChunkedArray, name: str, run_id: str
) -> SegmentationView:
    table = reader.arrow(
        f"SELECT user_id, segment FROM segment_assignments WHERE run_id = {lit(run_id)}"
    )
    codes = np.full(len(users), NO_CODE, dtype=np.int16)
    segments: tuple[str, ...] = ()
    if table.num_rows:
        rows = _rows(users, _column(table, "user_id"))
        seg_codes, segments = _codes(_column(table, "segment"))
        known = rows >= 0
        codes[rows[known]] = seg_codes[known]
    strategies: list[tuple[str, Strategy] | None] = []
    if name in playbook.strategies:
        keys = _strategy_keys(reader, playbook, name, run_id, segments)
        for segment in segments:
            key = keys.get(segment)
            found = playbook.strategy_for(name, segment, keys)
            if found is None:
                strategies.append(None)
            else:
                strategies.append((key if key in playbook.strategies[name] else ANY_SEGMENT, found))
    else:
        strategies = [None] * len(segments)
    return SegmentationView(name, run_id, segments, codes, tuple(strategies))


def _carries_ui(playbook: Playbook, spec: CampaignSpec) -> bool:
    """A campaign shapes the interface when a variant or a targeted strategy has a ``ui``."""
    if any(v.ui for v in spec.variants or []):
        return True
    by_segment = playbook.strategies.get(spec.segmentation, {})
    if spec.segments == "all":
        return any(s.ui for s in by_segment.values())
    return any(s.ui for key, s in by_segment.items() if key in spec.segments or key == ANY_SEGMENT)


def _expiry(spec: CampaignSpec) -> datetime | None:
    if isinstance(spec.trigger, PromotionTrigger):
        return datetime.combine(spec.trigger.end, dtime(23, 59, 59), tzinfo=UTC)
    return None


def _campaigns(
    reader: _Reader, playbook: Playbook, users: pa.ChunkedArray
) -> tuple[CampaignView, ...]:
    if not playbook.campaigns or not reader.has("campaign_assignments"):
        table = None
    else:
        names = ", ".join(lit(n) for n in playbook.campaigns)
        table = reader.arrow(
            f"SELECT campaign, user_id, arm FROM campaign_assignments WHERE campaign IN ({names})"
        )
    out = []
    for name, spec in playbook.campaigns.items():
        arm_shares = spec.arms(playbook.holdout)
        control = list(arm_shares)[-1]
        arms = list(arm_shares)
        codes = np.full(len(users), NO_CODE, dtype=np.int8)
        if table is not None and table.num_rows:
            mine = table.filter(pc.equal(_column(table, "campaign"), name))
            if mine.num_rows:
                rows = _rows(users, _column(mine, "user_id"))
                arm_codes, labels = _codes(_column(mine, "arm"))
                for label in labels:  # arms stored but no longer in the playbook
                    if label not in arms:
                        arms.append(label)
                remap = np.array([arms.index(lbl) for lbl in labels], dtype=np.int8)
                known = rows >= 0
                codes[rows[known]] = remap[arm_codes[known]]
        out.append(
            CampaignView(
                name, spec, tuple(arms), control, codes, _carries_ui(playbook, spec), _expiry(spec)
            )
        )
    return tuple(out)


def _recommendations(
    reader: _Reader, users: pa.ChunkedArray, depth: int
) -> tuple[str | None, np.ndarray, np.ndarray, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    n = len(users)
    items = np.full((n, depth), NO_CODE, dtype=np.int32)
    scores = np.zeros((n, depth), dtype=np.float32)
    reasons = np.zeros((n, depth), dtype=np.int16)
    run_id = (
        reader.scalar(latest_run_sql("recommendation", kind="batch"))
        if reader.has("recommendation_runs")
        else None
    )
    if run_id is None:
        return None, items, scores, reasons, (), ()
    run = f"run_id = {lit(str(run_id))}"
    item_set = _column(
        reader.arrow(
            f'SELECT DISTINCT item_id FROM recommendations WHERE {run} AND "rank" <= {int(depth)}'
        ),
        "item_id",
    ).combine_chunks()
    reason_set = _column(
        reader.arrow(
            "SELECT DISTINCT coalesce(reason, '') AS reason FROM recommendations "
            f'WHERE {run} AND "rank" <= {int(depth)}'
        ),
        "reason",
    ).combine_chunks()
    for k in range(depth):  # one rank at a time: a tenth of the rows in memory at once
        table = reader.arrow(
            "SELECT user_id, item_id, score, coalesce(reason, '') AS reason "
            f'FROM recommendations WHERE {run} AND "rank" = {k + 1}'
        )
        if not table.num_rows:
            continue
        rows = _rows(users, _column(table, "user_id"))
        ok = rows >= 0
        item_codes = _rows(item_set, _column(table, "item_id"))
        reason_codes = _rows(reason_set, _column(table, "reason"))
        score = pc.fill_null(pc.cast(table.column("score"), pa.float32()), 0.0)
        items[rows[ok], k] = item_codes[ok]
        scores[rows[ok], k] = np.asarray(score.to_numpy(), dtype=np.float32)[ok]
        reasons[rows[ok], k] = reason_codes[ok]
        del table
    item_ids = tuple(str(v) for v in item_set.to_pylist())
    return str(run_id), items, scores, reasons, item_ids, tuple(reason_set.to_pylist())


def _utc(value: Any) -> datetime:
    ts = pd.Timestamp(value)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).to_pydatetime()


def _run_of(reader: _Reader, kind: str) -> tuple[str | None, datetime | None]:
    found = reader.query(latest_run_sql("prediction", columns="run_id, as_of", kind=kind))
    if not found:
        return None, None
    run_id, as_of = found[0]
    return str(run_id), _utc(as_of)


def _values(reader: _Reader, users: pa.ChunkedArray) -> ValueView | None:
    """The latest CLV and churn runs' scores per user row (a query per run, set-based;
    by run id, so both halves come from the runs named in the view)."""
    if not reader.has("predict_runs"):
        return None
    clv_run, clv_as_of = _run_of(reader, "clv")
    churn_run, churn_as_of = _run_of(reader, "churn")
    if clv_run is None and churn_run is None:
        return None
    from segmint.predict import churn_change_sql

    values = np.full((len(users), len(VALUE_FIELDS)), np.nan, dtype=np.float32)
    scored = np.zeros(len(users), dtype=bool)
    reads: list[tuple[str, list[str]]] = []
    if clv_run is not None:
        cols = [c for c in VALUE_FIELDS if not c.startswith("churn")]
        reads.append(
            (
                f"SELECT user_id, {', '.join(cols)} FROM predictions WHERE run_id = {lit(clv_run)}",
                cols,
            )
        )
    if churn_run is not None:
        reads.append(
            (churn_change_sql(f"SELECT {lit(churn_run)}"), ["churn_risk", "churn_risk_change"])
        )
    for sql, cols in reads:
        table = reader.arrow(sql)
        if not table.num_rows:
            continue
        rows = _rows(users, _column(table, "user_id"))
        known = rows >= 0
        for name in cols:
            col = pc.cast(table.column(name), pa.float64()).fill_null(np.nan)
            k = VALUE_FIELDS.index(name)
            values[rows[known], k] = np.asarray(col.to_numpy(), dtype=np.float32)[known]
        scored[rows[known]] = True
    return ValueView(clv_run, clv_as_of, churn_run, churn_as_of, values, scored)


def _titles(reader: _Reader, item_ids: tuple[str, ...]) -> dict[str, str | None]:
    if not item_ids:
        return {}
    table = reader.arrow("SELECT item_id, title FROM items")
    ids = _column(table, "item_id").to_pylist()
    titles = _column(table, "title").to_pylist()
    return dict(zip(ids, titles, strict=True))


def _popular(reader: _Reader, depth: int) -> list[tuple[str, float]]:
    """The items most bought (by distinct users) in the 30 days before the newest completed
    order: the cold-start list, as segmint.recommend's fallback for users after a run."""
    rows = reader.query(
        "WITH last AS (SELECT max(o.ts) AS t FROM orders o WHERE "
        f"{completed('o')}) SELECT oi.item_id, count(DISTINCT o.user_id) AS n_users "
        "FROM order_items oi JOIN orders o ON o.order_id = oi.order_id CROSS JOIN last "
        f"WHERE {completed('o')} AND o.ts >= last.t - INTERVAL '30 days' "
        f"GROUP BY oi.item_id ORDER BY n_users DESC, oi.item_id LIMIT {int(depth)}"
    )
    return [(str(item), float(n)) for item, n in rows]


def _ordered_segmentations(
    playbook: Playbook, latest: list[tuple[Any, ...]]
) -> list[tuple[str, str]]:
    """Latest runs: the playbook's segmentations first (in its order), then the others."""
    runs = {str(s): str(r) for s, r in latest}
    first = [s for s in playbook.strategies if s in runs]
    return [(s, runs[s]) for s in first + sorted(set(runs) - set(first))]


def build_snapshot(
    store: Any,
    playbook: Playbook,
    *,
    depth: int = 10,
    lock: Callable[[], AbstractContextManager[Any]] | None = None,
    hold: Hold | None = None,
    previous_fingerprint: tuple[Any, ...] | None = None,
    personalization: str = "opt_out",
) -> Snapshot:
    """Read the latest runs into a new :class:`Snapshot` (``depth`` recommendations kept
    per user); ``lock`` guards each query (the service's store lock); ``personalization``
    is ``privacy.personalization`` (opt_out or opt_in)."""
    started = time.perf_counter()
    reader = _Reader(hold if hold is not None else held(store, lock))
    fp = previous_fingerprint or fingerprint(reader)
    users = _column(reader.arrow("SELECT user_id FROM users"), "user_id").combine_chunks()
    keys = _bytes_array(users)
    order = np.argsort(keys, kind="stable").astype(np.int32)
    latest = reader.query(latest_runs_sql()) if reader.has("segment_runs") else []
    segmentations = tuple(
        _segmentation(reader, playbook, users, name, run_id)
        for name, run_id in _ordered_segmentations(playbook, latest)
    )
    campaigns = _campaigns(reader, playbook, users)
    rec_run, rec_items, rec_scores, rec_reasons, item_ids, reasons = _recommendations(
        reader, users, depth
    )
    popular = _popular(reader, depth)
    titles = _titles(reader, tuple(set(item_ids) | {i for i, _ in popular}))
    anon_keys, anon_users = _identities(reader)
    impersonal = _impersonal(reader, users, personalization)
    value = _values(reader, users)
    digest = hashlib.sha256(repr((fp, depth, personalization)).encode()).hexdigest()[:12]
    snapshot = Snapshot(
        snapshot_id=f"snap-{digest}",
        built_at=datetime.now(UTC),
        fingerprint=fp,
        playbook=playbook,
        user_keys=keys[order],
        user_rows=order,
        anon_keys=anon_keys,
        anon_users=anon_users,
        segmentations=segmentations,
        campaigns=campaigns,
        rec_run_id=rec_run,
        rec_items=rec_items,
        rec_scores=rec_scores,
        rec_reasons=rec_reasons,
        items=item_ids,
        titles=tuple(titles.get(i) for i in item_ids),
        reasons=reasons,
        popular=tuple((i, titles.get(i), s) for i, s in popular),
        impersonal=impersonal,
        value=value,
        personalization=personalization,
        build_seconds=time.perf_counter() - started,
        counts={
            "users": int(keys.size),
            "identities": int(anon_keys.size),
            "impersonal": int(impersonal.sum()),
            "scored": int(value.scored.sum()) if value is not None else 0,
        },
    )
    log.info(
        "decision snapshot %s: %d users, %d segmentations, %d campaigns, recommendations %s; "
        "%.2fs, %.1f MB",
        snapshot.snapshot_id,
        snapshot.n_users,
        len(segmentations),
        len(campaigns),
        rec_run or "none",
        snapshot.build_seconds,
        snapshot.nbytes() / 1e6,
    )
    return snapshot


def _identities(reader: _Reader) -> tuple[np.ndarray, np.ndarray]:
    if not reader.has("identities"):
        return np.array([], dtype="S1"), np.array([], dtype="S1")
    table = reader.arrow("SELECT anonymous_id, user_id FROM identities")
    anon = _bytes_array(_column(table, "anonymous_id"))
    target = _bytes_array(_column(table, "user_id"))
    order = np.argsort(anon, kind="stable")
    return anon[order], target[order]


class _NoLock(AbstractContextManager[None]):
    def __exit__(self, *exc: object) -> None:
        return None


Hold = Callable[[], AbstractContextManager[Any]]
"""``hold()``: a context manager yielding the store, held by the caller alone until the
block ends (the service passes ``lambda: hold_store(app)``)."""


def held(store: Any, lock: Callable[[], AbstractContextManager[Any]] | None = None) -> Hold:
    """A :data:`Hold` for an open store, each use under ``lock()`` if given."""

    @contextmanager
    def hold() -> Iterator[Any]:
        with (lock or _no_lock)():
            yield store

    return hold


def _no_lock() -> AbstractContextManager[None]:
    return _NoLock()


class SnapshotWorker(Periodic):
    """Keeps ``current`` (the latest :class:`Snapshot`) fresh: :meth:`start` builds the
    first one, then a thread polls the store's fingerprint every ``poll_seconds`` and
    rebuilds when the runs changed (at once) or only users and identities changed (at most
    every ``people_seconds``, so live tracking does not rebuild all the time)."""

    def __init__(
        self,
        hold: Hold,
        playbook: Playbook | Callable[[], Playbook],
        *,
        depth: int = 10,
        poll_seconds: float = 5.0,
        people_seconds: float = 60.0,
        personalization: str | Callable[[], str] = "opt_out",
    ) -> None:
        self.hold = hold
        self._playbook = playbook
        self._personalization = personalization
        self.depth = depth
        self.poll_seconds = poll_seconds
        self.people_seconds = people_seconds
        self.current: Snapshot | None = None
        self.builds = 0
        super().__init__()

    @property
    def playbook(self) -> Playbook:
        """The playbook now: given as a function (the service's reloaded configuration),
        a changed playbook brings a rebuild at the next poll."""
        return self._playbook() if callable(self._playbook) else self._playbook

    @property
    def personalization(self) -> str:
        """``privacy.personalization`` now (opt_out or opt_in)."""
        mode = self._personalization
        return mode() if callable(mode) else mode

    thread_name = "segmint-snapshots"
    failure = "rebuilding the decision snapshot failed; the previous one stays"

    @property
    def interval(self) -> float:
        return self.poll_seconds

    def tick(self) -> None:
        self.refresh()

    def start(self) -> None:
        try:
            self.refresh(force=True)
        except Exception:  # the service starts anyway: /v1/decide answers 503 until a build
            log.exception("building the first decision snapshot failed; retrying")
        self._start_thread()

    def stop(self) -> None:
        self._stop_thread()

    def _with_identities(self, old: Snapshot, reader: _Reader, fp: tuple[Any, ...]) -> Snapshot:
        """``old`` with the identities read now, swapped in: a visitor who identifies is
        recognised at the next poll, not at the next full rebuild. The fingerprint keeps
        the old user count, so new users still bring a (throttled) full rebuild."""
        anon_keys, anon_users = _identities(reader)
        users = old.fingerprint[1][:1]
        snapshot = replace(
            old,
            fingerprint=(fp[0], users + tuple(fp[1][1:]), *old.fingerprint[2:]),
            anon_keys=anon_keys,
            anon_users=anon_users,
            counts={**old.counts, "identities": int(anon_keys.size)},
        )
        self.current = snapshot  # the swap: one reference assignment
        return snapshot

    def _with_consent(self, old: Snapshot, reader: _Reader, fp: tuple[Any, ...]) -> Snapshot:
        """``old`` with the personalization consents read now, swapped in: a revoke takes
        effect at the next poll, without a full rebuild."""
        keys = np.empty_like(old.user_keys)
        keys[old.user_rows] = old.user_keys  # back in the users' row order
        users = pa.array(keys, pa.binary()).cast(pa.string())
        impersonal = _impersonal(reader, users, old.personalization)
        snapshot = replace(
            old,
            fingerprint=(*old.fingerprint[:2], fp[2]),
            impersonal=impersonal,
            counts={**old.counts, "impersonal": int(impersonal.sum())},
        )
        self.current = snapshot  # the swap: one reference assignment
        return snapshot

    def refresh(self, *, force: bool = False) -> bool:
        """Rebuild if the store changed (or ``force``); True when a new snapshot is in."""
        reader = _Reader(self.hold)
        fp = fingerprint(reader)
        old = self.current
        playbook = self.playbook
        mode = self.personalization
        if old is None or old.playbook is not playbook or old.personalization != mode:
            force = True  # first build, or segmint.yaml's playbook or consent mode changed
        if not force and old is not None:
            if fp == old.fingerprint:
                return False
            swapped = False
            if fp[2] != old.fingerprint[2]:  # a personalization consent changed
                old = self._with_consent(old, reader, fp)
                swapped = True
                if fp == old.fingerprint:
                    return True
            people_only = fp[0] == old.fingerprint[0]
            if people_only and fp[1][1:] != old.fingerprint[1][1:]:
                # identities changed (a visitor identified): re-read them alone, at once
                old = self._with_identities(old, reader, fp)
                swapped = True
            age = (datetime.now(UTC) - old.built_at).total_seconds()
            if people_only and (fp == old.fingerprint or age < self.people_seconds):
                return swapped
        snapshot = build_snapshot(
            None,
            playbook,
            depth=self.depth,
            hold=self.hold,
            previous_fingerprint=fp,
            personalization=mode,
        )
        self.current = snapshot  # the swap: one reference assignment
        self.builds += 1
        return True
