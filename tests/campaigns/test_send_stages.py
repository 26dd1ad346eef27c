"""The stages of ``send_campaign`` one by one (claim, render, hand over, record), on a
hand-made delivery log; tests/campaigns/test_send.py and test_kill_resume.py check the
whole send end to end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from segmint._playbook import FrequencyCap
from segmint.campaigns import Channel, ChannelUnavailable, DeliveryResult, Message
from segmint.campaigns._delivery import (
    SendReport,
    _claim_group,
    _record_outcomes,
    _render_batch,
    _Sender,
    _todo_where,
)
from segmint.campaigns._journal import DeliveryJournal
from segmint.campaigns._messages import PreparedMessage
from segmint.errors import DeliveryError, TemplateError
from segmint.store import Store, open_store

RUN = "c-1"
NOW = datetime(2026, 11, 27, 12, tzinfo=UTC)


@pytest.fixture()
def log_store(tmp_path: Path) -> Iterator[Store]:
    """A delivery log of run c-1 with three pending rows k1..k3 (users u1..u3) and one
    row of another campaign just sent to u3."""
    store = open_store(str(tmp_path / "log.duckdb"))
    for i in (1, 2, 3):
        store.execute(
            "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, channel, "
            "status, attempts, ambiguous, message_id, created_at) VALUES "
            f"('k{i}', 'c', '{RUN}', 'u{i}', '1', 'fake', 'pending', 0, FALSE, '<m{i}@x>', "
            "current_timestamp)"
        )
    store.execute(
        "INSERT INTO deliveries (idempotency_key, campaign, run_id, user_id, step, channel, "
        "status, attempts, ambiguous, created_at, sent_at) VALUES ('other|u3|1', 'other', "
        "'c-0', 'u3', '1', 'fake', 'sent', 1, FALSE, current_timestamp, "
        "current_timestamp)"
    )
    yield store
    store.close()


def _rows(store: Store) -> dict[str, tuple[str, int, bool, str | None]]:
    frame = store.query(
        f"SELECT idempotency_key, status, attempts, ambiguous, error FROM deliveries "
        f"WHERE run_id = '{RUN}' ORDER BY idempotency_key"
    )
    return {
        str(k): (str(s), int(a), bool(b), None if pd.isna(e) else str(e))
        for k, s, a, b, e in frame.itertuples(index=False)
    }


def _prepared(key: str) -> PreparedMessage:
    message = Message(key, "c", "u" + key[1:], "a@x.org", "s", "b", None, f"<m{key}@x>", "")
    return PreparedMessage("fake", "gold", message)


class _Fake(Channel):
    """Answers from a list; records what it was handed and calls the hand-over hook."""

    supports_handover = True

    def __init__(self, answers: list[DeliveryResult | Exception]) -> None:
        self.name = "fake"
        self.answers = answers
        self.sent: list[str] = []

    def send(self, message: Message) -> DeliveryResult:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if self.on_handover is not None:
            self.on_handover(message)
        self.sent.append(message.idempotency_key)
        return answer


def _sender(
    store: Store, channel: Channel, journal: DeliveryJournal | None = None, **kw: int
) -> _Sender:
    return _Sender(
        store,
        name="c",
        run_id=RUN,
        report=SendReport(RUN, "c", 3, 0),
        journal=journal,
        channels={"fake": channel},
        build=lambda ch: channel,
        cap=FrequencyCap(max_messages=1, window_days=7),
        todo_where=_todo_where(RUN, 3),
        started=time.perf_counter(),
        max_consecutive_failures=kw.get("max_consecutive_failures", 50),
    )


# --- claim -----------------------------------------------------------------------------------


def test_claim_marks_rows_sending_and_skips_users_at_the_cap(log_store: Store) -> None:
    with log_store.transaction():
        capped = _claim_group(log_store, ["k1", "k2", "k3"], FrequencyCap(max_messages=1), NOW)
    assert capped == {"k3": 1}  # u3 just had a message of another campaign
    rows = _rows(log_store)
    assert rows["k1"][:2] == ("sending", 1) and rows["k2"][:2] == ("sending", 1)
    assert rows["k3"][0] == "skipped" and rows["k3"][1] == 0
    assert rows["k3"][3] is not None and rows["k3"][3].startswith("frequency cap")


def test_claim_under_a_looser_cap_claims_everyone(log_store: Store) -> None:
    with log_store.transaction():
        capped = _claim_group(log_store, ["k1", "k3"], FrequencyCap(max_messages=2), NOW)
    assert capped == {}
    assert {k: r[0] for k, r in _rows(log_store).items()} == {
        "k1": "sending",
        "k2": "pending",
        "k3": "sending",
    }


# --- record ----------------------------------------------------------------------------------


def test_record_writes_outcomes_and_releases_unattempted_claims(log_store: Store) -> None:
    with log_store.transaction():
        _claim_group(log_store, ["k1", "k2", "k3"], FrequencyCap(max_messages=5), NOW)
    marks = [
        ("k1", "<mk1@x>", DeliveryResult("sent"), False),
        ("k2", "<mk2@x>", DeliveryResult("rejected", "550 no such user"), True),
    ]
    with log_store.transaction():
        _record_outcomes(log_store, marks, {"k3": "pending"}, NOW)
    rows = _rows(log_store)
    assert rows["k1"] == ("sent", 1, False, None)
    assert rows["k2"] == ("rejected", 1, True, "550 no such user")
    assert rows["k3"] == ("pending", 0, False, None)  # claimed, never attempted: undone
    sent_at = log_store.query(
        "SELECT idempotency_key, sent_at FROM deliveries WHERE run_id = 'c-1'"
    )
    has = dict(zip(sent_at["idempotency_key"], sent_at["sent_at"].notna(), strict=True))
    assert has == {"k1": True, "k2": False, "k3": False}


# --- render ----------------------------------------------------------------------------------


class _Builder:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.where = ""

    def rows(self, where: str) -> pd.DataFrame:
        self.where = where
        return pd.DataFrame({"key": ["k1", "k2", "k3"], "segment": ["gold", "later", "gold"]})

    def messages(self, rows: pd.DataFrame) -> list[PreparedMessage]:
        if self.fail:
            raise TemplateError("template 'hello': 'offer' is undefined")
        return [_prepared(k) for k in rows["key"]]


def test_render_leaves_out_deferred_segments_and_counts_them() -> None:
    builder = _Builder()
    prepared, n_deferred = _render_batch(
        builder,  # type: ignore[arg-type]
        ["k1", "k2", "k3"],
        ["later"],
        name="c",
        n_sent=0,
    )
    assert [p.message.idempotency_key for p in prepared] == ["k1", "k3"]
    assert n_deferred == 1
    assert builder.where == "a.idempotency_key IN ('k1', 'k2', 'k3')"


def test_render_error_says_how_to_resume() -> None:
    with pytest.raises(TemplateError, match=r"12 sent before it.*segmint campaign send c"):
        _render_batch(_Builder(fail=True), ["k1"], [], name="c", n_sent=12)  # type: ignore[arg-type]


# --- hand over -------------------------------------------------------------------------------


def test_hand_over_journals_the_message_and_its_answer(log_store: Store, tmp_path: Path) -> None:
    journal = DeliveryJournal.open_or_none(tmp_path / "c.journal")
    assert journal is not None
    channel = _Fake([DeliveryResult("sent")])
    sender = _sender(log_store, channel, journal)
    sender.unattempted["k1"] = "pending"
    result, resent = sender.hand_over(_prepared("k1"), "pending")
    assert result.status == "sent" and not resent
    assert channel.sent == ["k1"] and sender.unattempted == {}
    entry = journal.read()["k1"]
    assert entry.status == "sent"
    journal.close(remove=True)


def test_hand_over_without_journal_flags_a_resend_of_a_sending_row(log_store: Store) -> None:
    sender = _sender(log_store, _Fake([DeliveryResult("sent")]))
    _, resent = sender.hand_over(_prepared("k1"), "sending")
    assert resent  # a killed run's last message: its fate was unknown


def test_hand_over_with_journal_resends_a_sending_row_unflagged(
    log_store: Store, tmp_path: Path
) -> None:
    journal = DeliveryJournal.open_or_none(tmp_path / "c.journal")
    sender = _sender(log_store, _Fake([DeliveryResult("sent")]), journal)
    _, resent = sender.hand_over(_prepared("k1"), "sending")
    assert not resent  # not in the journal: its receiver never got it whole
    assert journal is not None
    journal.close(remove=True)


def test_unavailable_channel_records_the_failure_and_stops(log_store: Store) -> None:
    sender = _sender(log_store, _Fake([ChannelUnavailable("connection refused")]))
    sender.commit([_prepared("k1")], {"k1": "pending"})
    with pytest.raises(DeliveryError, match="connection refused.*resumes") as info:
        sender.hand_over(_prepared("k1"), "pending")
    assert _rows(log_store)["k1"][:2] == ("failed", 1)
    assert info.value.report is sender.report and sender.report.failed == 1


# --- record (in memory), and a whole group ---------------------------------------------------


def test_note_counts_outcomes_and_stops_after_too_many_failures(log_store: Store) -> None:
    sender = _sender(log_store, _Fake([]), max_consecutive_failures=2)
    sender.note(_prepared("k1"), DeliveryResult("sent"), True)
    sender.note(_prepared("k2"), DeliveryResult("failed", "timeout"), False)
    report = sender.report
    assert (report.sent, report.resent_ambiguous, report.failed) == (1, 1, 1)
    assert report.by_channel == {"fake": 1} and sender.done == 2
    assert [m[0] for m in sender.marks] == ["k1", "k2"]
    with pytest.raises(DeliveryError, match="2 failures in a row, the last: bounced"):
        sender.note(_prepared("k3"), DeliveryResult("failed", "bounced"), False)
    assert _rows(log_store)["k3"][0] == "failed"  # recorded before stopping


def test_send_batch_claims_each_group_and_commits_the_previous(log_store: Store) -> None:
    channel = _Fake([DeliveryResult("sent"), DeliveryResult("sent")])
    sender = _sender(log_store, channel)
    prepared = [_prepared(k) for k in ("k1", "k2", "k3")]
    sender.send_batch(prepared, {"k1": "pending", "k2": "pending", "k3": "pending"}, group=2)
    rows = _rows(log_store)
    assert rows["k1"][0] == "sent" and rows["k2"][0] == "sent"  # committed with k3's claim
    assert rows["k3"][0] == "skipped"  # u3 at the cap (1 in 7 days)
    assert channel.sent == ["k1", "k2"] and sender.report.capped == 1 and sender.done == 3
    sender.commit([], {})
    assert sender.finish(True).complete
