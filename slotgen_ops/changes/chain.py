"""The whole audit log checked by every changing command and `status`, at a cost that stays small.

SPEC section 9: an edited, deleted, inserted or reordered entry anywhere in
the log is seen by every command that changes an environment and by `status`,
not only by `audit verify`. A full check (hash chain, environment, that every
entry's `state` replays and every signature proves its operator) reads the
whole log. SPEC section 14 adds two rules to that pass: `init` is entry 1 and
only entry 1, and an entry with no proven operator is accepted only if the
state it leads to exposes no more jobs than the state before it
(`state.widening`); and the log must extend the highest head this machine has
seen of the environment (`heads`: no rewind).

To keep a command's cost flat as the log grows, a per-user cache remembers,
after a full check, the file's identity (device, inode, size, mtime, ctime)
and its head entry. A writer holding the lock that appended to a log it had
just found sound moves the cache (and the memory of heads) forward with the
file, so the next command only stats the file and reads its last line. Any
other change to the file (an edit in place, even one that restores mtime with
`touch`, moves its ctime, which no user can set) no longer matches, and the
log is checked in full again. The cache is never a trust anchor: it lives only
in a directory of this user's (never a shared temporary directory), a record
not bound to the log as it is now is ignored, and a missing, stale or
unreadable cache only costs a full check.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from ..errors import IntegrityFailure
from ..runbook.state import INIT, REFUSED, ROLLBACK, apply, widening


def replay_checker():
    """A per-entry check for the verify pass: each entry's recorded `state` is what its action yields,
    and its signature is by the operator it names, under the roster in force before it (SPEC section 7)."""
    state: dict[str, Any] | None = None
    keys = _RosterKeys()

    def check(entry: dict[str, Any]) -> str | None:
        nonlocal state
        if entry.get("action") == INIT and entry.get("seq") != 1:
            return (f"entry seq {entry.get('seq')} is an 'init': init is entry 1 and only entry 1 (a second one "
                    "would replace everything recorded before it)")
        try:
            expected = apply(state, entry)
        except (KeyError, TypeError, ValueError) as exc:
            return f"entry seq {entry.get('seq')} cannot be replayed ({exc})"
        if entry.get("state") != expected:
            return f"entry seq {entry.get('seq')}: its recorded state is not what its action yields"
        problem = signature_problem(entry, state if state is not None else expected, keys, before=state,
                                    after=expected)
        if problem is not None:
            return f"entry seq {entry.get('seq')}: {problem}"
        state = expected
        return None

    return check


# Entries that may be recorded with no proven operator (SPEC sections 6 and 7): the start of a log (nobody
# is in a roster yet), a rollback (it only ever engages the kill-switch) and a refusal (it changes nothing).
_UNSIGNED_OK = (INIT, ROLLBACK, REFUSED)


class _RosterKeys:
    """{operator id: public key lines} of the roster in force, built once per accepted roster."""

    def __init__(self) -> None:
        self._policy: Any = None
        self._keys: dict[str, tuple[str, ...]] = {}

    def of(self, policy: dict[str, Any]) -> dict[str, tuple[str, ...]]:
        if policy is not self._policy:
            roster = policy.get("roster") or {}
            operators = roster.get("operators") if isinstance(roster, dict) else None
            self._keys = {str(op.get("id")): tuple(op.get("keys") or ()) for op in operators or ()
                          if isinstance(op, dict)}
            self._policy = policy
        return self._keys


def signature_problem(entry: dict[str, Any], state: dict[str, Any], keys: _RosterKeys | None = None, *,
                      before: dict[str, Any] | None = None, after: dict[str, Any] | None = None) -> str | None:
    """Why `entry`'s signature does not prove who recorded it under the policy of `state`; None if it does.

    An entry with no signature (SPEC sections 6, 7 and 14) is accepted only if it is one a writer records with
    no proven operator (an `init` as entry 1, a rollback or a refusal saying `unidentified`; any entry saying
    `declared` under `identity: declared`) *and*, replaying (`after` given: the state it leads to from
    `before`), the state it leads to exposes no more jobs than the one before it (`state.widening`). So no
    unsigned entry can ever turn anything on, whatever its action claims and whatever `apply` makes of it."""
    from ..audit.sshkey import KeyFormatError
    from ..audit.sshsig import BadSignature, verify
    from ..policy.signing import NAMESPACE

    policy = state.get("policy") if isinstance(state.get("policy"), dict) else {}
    mode = policy.get("identity") or "signed"
    signature = entry.get("signature")
    actor = entry.get("actor") if isinstance(entry.get("actor"), dict) else {}
    identity = actor.get("identity")
    if signature is None:
        action = entry.get("action")
        if action == INIT and entry.get("seq") != 1:
            return "an 'init' after entry 1 is never accepted"
        allowed = (action == INIT or (identity == "unidentified" and action in _UNSIGNED_OK)
                   or (mode == "declared" and identity == "declared"))
        if not allowed:
            return (f"{action} by {entry.get('operator')!r} is not signed, and the policy in force "
                    f"(identity: {mode}) does not allow that")
        # An init starts from nothing, which exposes nothing, in any identity mode: `slotgen init` writes every
        # control safe, so an entry 1 that exposes jobs is a forged start, declared or not.
        if after is not None and (action == INIT or mode != "declared" or identity != "declared"):
            wider = widening(before, after)
            if wider is not None:
                return (f"{action} by {entry.get('operator')!r} is not signed, and only an entry that exposes no "
                        f"more jobs than the state before it may lack a proven operator: {wider}")
        return None
    if not isinstance(signature, dict) or signature.get("namespace") != NAMESPACE \
            or not isinstance(signature.get("sshsig"), str):
        return "its signature is not a slotgen-audit SSH signature"
    if identity != "signed":
        return f"it carries a signature but says its identity is {identity!r}"
    allowed = (keys or _RosterKeys()).of(policy).get(str(entry.get("operator")), ())
    if not allowed:
        return f"signed as {entry.get('operator')!r}, who has no key in the roster in force"
    try:
        verified = verify(str(entry.get("hash")).encode("ascii"), signature["sshsig"], NAMESPACE, allowed)
    except BadSignature as exc:
        return f"its signature does not prove {entry.get('operator')!r}: {exc.detail}"
    except (KeyFormatError, UnicodeEncodeError) as exc:
        return f"the roster in force holds an unusable key for {entry.get('operator')!r} ({exc})"
    if signature.get("fingerprint") != verified.fingerprint or actor.get("key") != verified.fingerprint:
        return f"its signature is by {verified.fingerprint}, not the key the entry names"
    return None


def chain_report(env: Any) -> dict[str, Any]:
    """The log alone, in full: hash chain, environment, that every `state` replays and every signature proves
    its operator, and that it extends the head this machine saw (no controls anchor)."""
    report = verify_log(env, anchor=None)
    return {"valid": report.valid, "entries": report.entries, "firstBad": report.first_bad, "reason": report.reason}


def verify_log(env: Any, anchor: tuple[int, str] | None = None) -> Any:
    """`env.log.verify` with the replay checker, held to this machine's memory of the environment's head
    (SPEC section 14, "No rewind"; see `heads`); a log found sound moves the memory forward. A log that
    fails on its own says so first; only a log that is sound in itself can be found rewound."""
    from ..audit.review import VerifyReport
    from . import heads

    seen = heads.recall(env)
    observer = heads.Observer(replay_checker(), seen)
    before = env.log.identity()
    report = env.log.verify(anchor=anchor, env=env.name, check=observer)
    if not report.valid:
        return report
    head = observer.last
    found = heads.problem(env, seen, report.entries, head[1] if head else None, observer.first, observer.at_seen)
    if found is not None:
        return VerifyReport(valid=False, entries=report.entries, first_bad=found[0], reason=found[1])
    if head is not None and observer.first is not None and env.log.identity() == before:
        heads.record(env, head[0], head[1], observer.first)
        _remember_checked(env, before, head, observer.first)
    return report


# -- the verified-log cache ------------------------------------------------------------------------------------
#
# SPEC section 14, "Redirects are policy": the cache lives only in a directory of this user's that nobody else
# can write or swap (`paths.private_dir`: $XDG_CACHE_HOME/slotgen/verified, else ~/.cache/slotgen/verified;
# with neither, no cache at all, never a shared temporary directory), and a record is trusted only while it is
# bound to the log's bytes as they are now. Binding by a SHA-256 of the whole file would cost the full read the
# cache exists to avoid; a record binds instead the file's identity (device, inode, size, mtime, ctime: any
# write moves the ctime, which no user can set back) *and* the head entry (seq, hash) read from the end of the
# file, which commits by its hash chain to every byte before it, and the memory of heads it was checked
# against. So a record made for one log is never good for another, nor for the same file rewritten in place
# to the same size, nor once this machine has seen a newer head (then the log is checked in full again).


def _cache_dir() -> Path | None:
    from ..policy.paths import private_dir, user_dir

    return private_dir(user_dir("XDG_CACHE_HOME", (".cache",)), "slotgen", "verified")


def _cache_file(key: str) -> Path | None:
    folder = _cache_dir()
    if folder is None:
        return None
    return folder / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.json"


def _cached_record(key: str) -> dict[str, Any] | None:
    from ..policy.paths import read_private_json

    target = _cache_file(key)
    doc = read_private_json(target) if target is not None else None
    return doc if doc is not None and doc.get("log") == key else None


def _cached(key: str) -> Any:
    """The log identity the cache holds for `key` (None: no record)."""
    doc = _cached_record(key)
    return doc.get("identity") if doc is not None else None


def remember(key: str, identity: Any, head: Any = None, first: Any = None) -> None:
    """Record that the log, as it stands with this identity and head (seq, hash), is sound (best effort). A
    record without a head binds nothing and is never trusted."""
    if identity is None:
        return
    target = _cache_file(key)
    if target is None:
        return  # no private place: no cache
    from ..policy.paths import write_private_json

    try:
        write_private_json(target, {"log": key, "identity": identity, "head": list(head) if head else None,
                                    "first": first})
    except OSError:
        pass  # no cache: the next command checks in full


def _remember_checked(env: Any, identity: Any, head: tuple[int, str], first: str) -> None:
    remember(env.log.cache_key(), identity, head, first)


def _trusted(env: Any, identity: Any) -> bool:
    """The cache vouches for the log as it is now: the same file identity, the same head entry (read from the
    end), and this machine's memory of the head no further than what was checked."""
    from . import heads

    doc = _cached_record(env.log.cache_key())
    if doc is None or doc.get("identity") != identity or not isinstance(doc.get("head"), list):
        return False
    try:
        head = env.log.head()
    except IntegrityFailure:
        return False
    if head is None or [head.get("seq"), head.get("hash")] != doc["head"]:
        return False
    return all(m.first == doc.get("first") and m.seq == head["seq"] and m.hash == head["hash"]
               for m in heads.recall(env))


def require_sound(env: Any) -> list[int] | None:
    """IntegrityFailure (exit 4) naming the first bad entry if the log is not sound (or no longer extends the
    head this machine saw); the identity checked."""
    log = env.log
    before = log.identity()
    if before is not None and _trusted(env, before):
        return before
    report = chain_report(env)
    if not report["valid"]:
        raise IntegrityFailure(f"{log.path}: the audit log fails verification at seq {report['firstBad']}: "
                               f"{report['reason']}; 'slotgen audit verify --env {env.name}' shows it (rollback "
                               "still works)", first_bad=report["firstBad"])
    return before


def advance(env: Any, checked: list[int] | None, appended_by_us: bool) -> list[int] | None:
    """After this writer's own append to a log it found sound: the cache and the memory of heads follow."""
    from . import heads

    now = env.log.identity()
    if checked is not None and appended_by_us:
        head = env.log.head()
        seen = heads.recall(env)
        cached = _cached_record(env.log.cache_key())
        first = seen[0].first if seen else (cached or {}).get("first")
        if head is not None and isinstance(first, str):
            seq, digest, key = int(head["seq"]), str(head["hash"]), env.log.cache_key()

            def believe() -> None:
                heads.record(env, seq, digest, first)
                remember(key, now, (seq, digest), first)

            # On PostgreSQL an append is not durable until the section's COMMIT: a head that may still roll back
            # is never remembered (it would read as a rewind later). A file append is durable when it returns.
            after_commit = getattr(env.lock, "after_commit", None)
            if after_commit is not None:
                after_commit(believe)
            else:
                believe()
    return now
