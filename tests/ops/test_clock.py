"""Time in one place (`slotgen_ops.clock`): every form written reads back to the moment it names, and every
comparison of times (approval expiry, soak, review filters, break-glass order) is made on datetimes,
so two timestamps written in different forms compare by the instant they name, never as strings."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, strategies as st

from slotgen_ops.audit.append import utc_timestamp as audit_timestamp
from slotgen_ops.audit.review import filter_entries
from slotgen_ops.contract import KILL_VAR, ROLLOUT_VAR
from slotgen_ops.errors import IntegrityFailure, Refused
from slotgen_ops.policy.authority import approval_record, check_approval
from slotgen_ops.clock import (
    expired,
    parse_utc,
    parse_utc_or_none,
    utc,
    utc_compact,
    utc_display,
    utc_millis,
)
from slotgen_ops.runbook.judge import soak_ready_at
from slotgen_ops.runbook.state import APPROVE, SET, apply, initial_state
from slotgen_ops.runtime.telemetry import utc_timestamp as telemetry_timestamp

from helpers_runbook import shipped_runbook

UTC = timezone.utc
# Any fixed offset a timestamp may carry (RFC 3339 allows -23:59..+23:59), to the minute.
offsets = st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
# Far enough from datetime.min/max that converting to UTC cannot overflow.
moments = st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30), timezones=offsets)
naive = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))


# -- formats and the parser ----------------------------------------------------------------------


@given(moments)
def test_the_audit_form_round_trips_to_the_microsecond(moment: datetime) -> None:
    text = utc(moment)
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z", text)
    assert parse_utc(text) == moment
    assert parse_utc(text).utcoffset() == timedelta(0)
    assert audit_timestamp(moment) == text


@given(moments)
def test_the_telemetry_and_display_forms_round_trip_to_their_precision(moment: datetime) -> None:
    millis = utc_millis(moment)
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z", millis)
    assert telemetry_timestamp(moment) == millis
    assert parse_utc(millis) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    shown = utc_display(moment)
    assert re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z", shown)
    assert parse_utc(shown) == moment.replace(microsecond=0)
    assert parse_utc(shown) <= moment  # truncated: a displayed time is never later than the moment
    assert re.fullmatch(r"[0-9]{8}T[0-9]{6}Z", utc_compact(moment))
    assert utc_compact(moment) == shown.replace("-", "").replace(":", "")


@given(moments)
def test_an_offset_reads_as_the_instant_it_names(moment: datetime) -> None:
    assert parse_utc(moment.isoformat()) == moment
    assert parse_utc(moment.isoformat().replace("+00:00", "Z")) == moment


@given(naive)
def test_a_naive_time_is_utc_both_ways(moment: datetime) -> None:
    assert parse_utc(moment.isoformat()) == moment.replace(tzinfo=UTC)
    assert parse_utc(utc(moment)) == moment.replace(tzinfo=UTC)


@given(moments, moments)
def test_order_of_the_written_forms_is_the_order_of_the_moments(a: datetime, b: datetime) -> None:
    assert (parse_utc(utc(a)) < parse_utc(b.isoformat())) == (a < b)
    assert expired(utc(a), b) == (a <= b)
    assert expired(a.isoformat(), utc(b)) == (a <= b)
    assert expired(a.replace(tzinfo=None).isoformat(), b)  # no zone on an expiry: fail closed


def test_the_forms_of_one_moment() -> None:
    moment = datetime(2026, 3, 4, 9, 15, 26, 123456, tzinfo=timezone(timedelta(hours=1)))
    assert utc(moment) == "2026-03-04T08:15:26.123456Z"
    assert utc_millis(moment) == "2026-03-04T08:15:26.123Z"
    assert utc_display(moment) == "2026-03-04T08:15:26Z"
    assert utc_compact(moment) == "20260304T081526Z"
    assert utc(datetime(999, 1, 2, tzinfo=UTC)) == "0999-01-02T00:00:00.000000Z"  # padded, unlike %Y


@pytest.mark.parametrize("text, moment", [
    ("2026-03-04T08:15:26Z", datetime(2026, 3, 4, 8, 15, 26, tzinfo=UTC)),
    ("2026-03-04t08:15:26z", datetime(2026, 3, 4, 8, 15, 26, tzinfo=UTC)),
    ("2026-03-04 08:15:26", datetime(2026, 3, 4, 8, 15, 26, tzinfo=UTC)),
    ("2026-03-04T10:15:26+02:00", datetime(2026, 3, 4, 8, 15, 26, tzinfo=UTC)),
    ("2026-03-04T06:15:26-0200", datetime(2026, 3, 4, 8, 15, 26, tzinfo=UTC)),
    ("2026-03-04T10:15+02", datetime(2026, 3, 4, 8, 15, tzinfo=UTC)),
    ("2026-03-04T08:15:26.1234569Z", datetime(2026, 3, 4, 8, 15, 26, 123456, tzinfo=UTC)),  # cut, not rounded
    ("2026-03-04T08:15:26,5Z", datetime(2026, 3, 4, 8, 15, 26, 500000, tzinfo=UTC)),
    ("2026-03-04", datetime(2026, 3, 4, tzinfo=UTC)),
])
def test_accepted_forms(text: str, moment: datetime) -> None:
    assert parse_utc(text) == moment
    assert parse_utc(text).tzinfo == UTC


@pytest.mark.parametrize("text", [
    "", "now", "yesterday", "1h", " 2026-03-04T08:15:26Z", "2026-03-04T08:15:26Z ", "2026-03-04T08:15:26Z\n",
    "2026-13-04T08:15:26Z", "2026-02-30T00:00:00Z", "2026-03-04T24:00:00Z", "2026-03-04T08:60:00Z",
    "2026-03-04T08:15:60Z", "2026-03-04T08:15:26+24:00", "2026-03-04T08:15:26+02:60", "2026-03-04T08:15:26 UTC",
    "20260304T081526Z", "2026-W10-3", "2026-063", "2026-03-04T08", "2026-03-04T08:15:26.Z", "26-03-04T08:15:26Z",
    "\uff12\uff10\uff12\uff16-03-04T08:15:26Z", "0001-01-01T00:00:00+01:00", None, 1741076126, 1.5,
    b"2026-03-04T08:15:26Z", datetime(2026, 3, 4, tzinfo=UTC),
])
def test_anything_else_is_a_value_error(text: object) -> None:
    with pytest.raises(ValueError):
        parse_utc(text)
    assert parse_utc_or_none(text) is None


# -- approval expiry: compared as times across forms ---------------------------------------------


def test_an_expiry_with_an_offset_is_compared_with_a_z_time_as_the_same_instant() -> None:
    # 12:00+02:00 is 10:00Z: passed at 10:30Z, although as a string it sorts after "2026-01-01T10:30...Z".
    assert "2026-01-01T12:00:00+02:00" > "2026-01-01T10:30:00.000000Z"
    assert expired("2026-01-01T12:00:00+02:00", "2026-01-01T10:30:00.000000Z")
    # 09:00-02:00 is 11:00Z: still ahead at 10:30Z, although as a string it sorts before.
    assert "2026-01-01T09:00:00-02:00" < "2026-01-01T10:30:00.000000Z"
    assert not expired("2026-01-01T09:00:00-02:00", "2026-01-01T10:30:00.000000Z")
    assert expired("2026-01-01T10:00:00Z", datetime(2026, 1, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))))
    assert not expired("2026-01-01T10:00:00.000001Z", "2026-01-01T12:00:00+02:00")


@pytest.mark.parametrize("expires_at", [None, "", "soon", 1893456000, "2026-02-30T00:00:00Z", "2999-01-01T00:00:00",
                                        "2999-01-01"])
def test_an_expiry_that_cannot_be_read_has_expired(expires_at: object) -> None:
    assert expired(expires_at, datetime(2000, 1, 1, tzinfo=UTC))


def test_a_time_that_cannot_be_read_expires_everything() -> None:
    assert expired("2999-01-01T00:00:00Z", "not a time")


def _approval(expires_at: str) -> dict:
    record = approval_record("staging", ROLLOUT_VAR, "5", "DR-1", "approver", 24,
                             datetime(2026, 1, 1, tzinfo=UTC), old="1")
    return {**record, "expiresAt": expires_at}


def test_check_approval_compares_the_expiry_as_a_time() -> None:
    approvals = {"apv-1": _approval("2026-01-01T12:00:00+02:00")}  # = 10:00Z

    def use(now: datetime) -> None:
        check_approval(approvals, "apv-1", "staging", ROLLOUT_VAR, "5", "DR-1", "oncall", now, old="1")

    use(datetime(2026, 1, 1, 9, 59, 59, tzinfo=UTC))
    with pytest.raises(Refused, match="expired at 2026-01-01T12:00:00\\+02:00"):
        use(datetime(2026, 1, 1, 10, 30, tzinfo=UTC))


def test_replayed_state_drops_an_approval_by_the_instant_its_expiry_names() -> None:
    state = {**initial_state(), "controls": {**initial_state()["controls"], KILL_VAR: "false", ROLLOUT_VAR: "1"}}
    approve = {"action": APPROVE, "approvalId": "apv-1", "ts": "2026-01-01T07:00:00.000000Z",
               "details": {"approval": _approval("2026-01-01T12:00:00+02:00")}}  # = 10:00Z
    state = apply(state, approve)
    assert "apv-1" in state["approvals"]
    kept = apply(state, {"action": "refused", "ts": "2026-01-01T09:59:59.999999Z"})
    assert "apv-1" in kept["approvals"]
    gone = apply(state, {"action": "refused", "ts": "2026-01-01T10:30:00.000000Z"})  # a string compare keeps it
    assert gone["approvals"] == {}


def test_replayed_state_keeps_an_approval_a_string_compare_would_drop() -> None:
    state = apply(initial_state(), {"action": APPROVE, "approvalId": "apv-2", "ts": "2026-01-01T07:00:00.000000Z",
                                    "details": {"approval": _approval("2026-01-01T09:00:00-02:00")}})  # = 11:00Z
    after = apply(state, {"action": SET, "control": KILL_VAR, "new": "true", "ts": "2026-01-01T10:30:00.000000Z"})
    assert "apv-2" in after["approvals"]


# -- soak, review filters, break-glass order -----------------------------------------------------


def test_the_soak_counts_from_the_instant_of_the_last_change_whatever_its_form() -> None:
    runbook = shipped_runbook()
    minutes = runbook.soak_minutes("production")
    for written in ("2026-01-01T12:00:00+02:00", "2026-01-01T10:00:00Z", "2026-01-01T10:00:00.000000Z"):
        ready = soak_ready_at({"lastChangeAt": written}, runbook, "production")
        assert ready == datetime(2026, 1, 1, 10, tzinfo=UTC) + timedelta(minutes=minutes)


def test_review_filters_compare_times_not_strings() -> None:
    entries = [{"seq": 1, "ts": "2026-01-01T09:00:00.000000Z"}, {"seq": 2, "ts": "2026-01-01T12:00:00+02:00"},
               {"seq": 3, "ts": "2026-01-01T10:30:00.000000Z"}]
    since = parse_utc("2026-01-01T10:00:00Z")
    assert [e["seq"] for e in filter_entries(entries, since=since)] == [2, 3]
    assert [e["seq"] for e in filter_entries(entries, until=since)] == [1]
    naive_since = datetime(2026, 1, 1, 10, 0)  # taken as UTC
    assert [e["seq"] for e in filter_entries(entries, since=naive_since)] == [2, 3]
    with pytest.raises(IntegrityFailure, match="unreadable ts"):
        list(filter_entries([{"seq": 9, "ts": "2026-W01-1"}], since=since))


def test_break_glass_entries_are_ordered_by_time(tmp_path) -> None:
    from slotgen_ops.policy.authority import Actor
    from slotgen_ops.changes.breakglass import BreakGlassJournal
    from slotgen_ops.changes.entries import journal_entry

    class Env:
        name = "staging"
        dir = tmp_path / "environments"

        class workspace:
            root = tmp_path

    journal = BreakGlassJournal(Env())
    actor = Actor(claimed="oncall", operator=None, identity="unidentified")
    written = ["2026-01-01T12:00:00+02:00", "2026-01-01T09:00:00.000000Z", "2026-01-01T10:30:00.000000Z"]
    for ts in written:
        fields = journal_entry("staging", actor, action="rollback", reason=ts)
        journal.append({**fields, "ts": ts})
    assert [e["reason"] for _, e in journal.entries()] == [written[1], written[0], written[2]]


def test_a_recorded_timestamp_in_a_table_is_shown_in_utc_whatever_its_form() -> None:
    from slotgen_ops.clock import readable_utc

    assert readable_utc("2026-01-01T12:00:00+02:00") == "2026-01-01 10:00:00"
    assert readable_utc("2026-01-01T10:00:59.999999Z") == "2026-01-01 10:00:59"
    assert readable_utc("2026-01-01T10:00:59.999999Z", minutes=True) == "2026-01-01 10:00"
    assert readable_utc("not a time") == "not a time"
    assert readable_utc(None) == ""
