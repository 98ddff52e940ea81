"""`slotgen audit checkpoint` and `audit verify --checkpoint` (SPEC sections 9 and 14).

A checkpoint is signed by an operator of the roster in force, with the key
that proves them (the same --key / SLOTGEN_SIGNING_KEY as their entries), over
the log as it stands: its complete lines, read under the shared lock. It is
kept outside the workspace (a ticket, a chat message, another machine): a
workspace that rewrites its own log, even re-signing every entry with an
insider's key, no longer extends a checkpoint taken before.

Besides the SSH signature, an Ed25519 key adds a C2SP signed-note line, so a
witness with the operator's verifier key checks it with standard tlog tooling
(audit/checkpoint.py says where it goes and under which name).

Whose signature counts: the roster in force at the checkpoint's size, that is
after its last entry, the roster the operator was judged under when they made
it (make_checkpoint signs the whole log as it then stood). It is not the
roster at the head, for the same reason an entry's signature is judged under
the roster at that entry (SPEC section 7):
- an operator removed later (left the team, a key rotated out) made an honest
  checkpoint while they were one; their removal must not turn their old
  checkpoints into "not signed", which would make a log that still extends
  them fail verification;
- an operator added later had no standing when the log had that size, so a
  checkpoint of an older size under their key is not one that `audit
  checkpoint` could have made: it is refused. (It could only say the log
  extends a prefix it does extend, so nothing is lost by refusing it, and a
  key added by a rewrite cannot vouch for the history before it.)
A checkpoint larger than the log cannot be judged (the entries that would say
who was an operator are missing); it fails anyway, the log being shorter.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

from ..audit import checkpoint as cp
from ..errors import BadInput, IntegrityFailure, Refused
from ..policy.authority import Actor, require_key

#: A checkpoint is a few hundred bytes; a hundred signed-note lines stay far below this.
MAX_CHECKPOINT_BYTES = 64 * 1024


def _roster_in_force(env: Any, size: int) -> dict[str, tuple[str, ...]] | None:
    """{operator id: keys} of the roster in force after the log's first `size` entries (leaf `size` - 1's
    `state`), or None when there is none: size 0 (no roster before `init`) or a log with fewer entries."""
    if size < 1:
        return None
    count = 0
    for line in env.log.lines():
        count += 1
        if count == size:
            entry = json.loads(line)
            state = entry.get("state") if isinstance(entry, dict) else None
            policy = state.get("policy") if isinstance(state, dict) else None
            roster = (policy.get("roster") if isinstance(policy, dict) else None) or {}
            operators = roster.get("operators") if isinstance(roster, dict) else None
            return {str(op.get("id")): tuple(str(k) for k in op.get("keys") or ()) for op in operators or ()
                    if isinstance(op, dict)}
    return None


def make_checkpoint(env: Any, actor: Actor) -> dict[str, Any]:
    """A signed checkpoint of the log as it now stands: {text, size, signer, fingerprint, note, vkey,
    warnings}. `note`: whether it carries a C2SP signed-note line; `vkey`: the verifier key a witness
    checks that line with (None without one)."""
    from ..audit import merkle, sshkey, sshkeygen
    from ..changes.chain import require_sound

    from dataclasses import replace

    from ..policy.pins import accepted_actor, accepted_roster

    require_sound(env)  # never vouch for a log that fails verification
    head = env.log.head()
    state = head.get("state") if isinstance(head, dict) and isinstance(head.get("state"), dict) else {}
    actor = accepted_actor(state, actor)  # the roster and keys the log accepted, not an edited file
    roster = accepted_roster(state)
    if actor.claimed is None and actor.fingerprint is not None and roster is not None:
        owners = roster.owners_of(actor.fingerprint)
        if len(owners) == 1:  # the key says who: --operator may be left out
            actor = replace(actor, claimed=owners[0].id, operator=owners[0])
    if actor.claimed is None:
        raise Refused("no operator given for a checkpoint: pass --operator ID (or set SLOTGEN_OPERATOR), and "
                      "--key FILE")
    if actor.operator is None:
        raise Refused(f"unknown operator {actor.claimed!r}: not listed in operators.yaml")
    if actor.identity != "signed":
        raise Refused("a checkpoint is signed: this workspace has identity: declared, so no operator has a key")
    require_key(actor)
    hashes = cp.leaves_of(env.log.lines())
    text = cp.body(f"slotgen/{env.name}", len(hashes), merkle.root(hashes))

    assert actor.key is not None and actor.key_line is not None
    try:  # outside any lock: ssh-agent or a hardware key may take its time
        signature = sshkeygen.sign(text, actor.key, cp.NAMESPACE)
    except sshkey.SigningError as exc:
        raise Refused(f"cannot sign the checkpoint as {actor.claimed}: {exc}") from None
    warnings: list[str] = []
    note_vkey = None
    try:
        line = cp.sign_note(text, actor.key) + "\n"
        note_vkey = cp.vkey(cp.note_name(f"slotgen/{env.name}"), actor.key_line)
    except sshkey.NotEd25519:
        line = ""
        kind = actor.key_line.split()[0]
        warnings.append(f"no C2SP signed-note line: {actor.claimed}'s key is {kind} ({actor.fingerprint}), and a "
                        "signed note needs an Ed25519 key; the checkpoint carries the SSH signature only")
    except sshkey.SigningError as exc:
        raise Refused(f"cannot sign the checkpoint's signed-note line as {actor.claimed}: {exc}") from None
    full = text.decode() + "\n" + signature + line
    cp.verify(full, actor.operator.keys)  # what was signed is what a verifier will accept
    for message in warnings:  # the command prints its own result; this line is said whatever the output
        sys.stderr.write(f"warning: {message}\n")
    return {"text": full, "size": len(hashes), "signer": actor.claimed, "fingerprint": actor.fingerprint,
            "note": bool(line), "vkey": note_vkey, "warnings": warnings}


def read_checkpoint(path: Path) -> tuple[str, str]:
    """(name, text) of a checkpoint file; BadInput (exit 2) if it cannot be read.

    Read without blocking and within a bound: a FIFO, a device or a huge file given as a checkpoint is
    named in one line, never waited on or read into memory.
    """
    def bad(why: str) -> BadInput:
        return BadInput(f"--checkpoint {path}: {why}")

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device"
                    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                    else "not a regular file")
            raise bad(f"it is {kind}, not a checkpoint file")
        data = b""
        while len(data) <= MAX_CHECKPOINT_BYTES:
            chunk = os.read(fd, MAX_CHECKPOINT_BYTES + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    finally:
        os.close(fd)
    if len(data) > MAX_CHECKPOINT_BYTES:
        raise bad(f"larger than {MAX_CHECKPOINT_BYTES // 1024} KiB, so not a checkpoint")
    try:
        return str(path), data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad("it is not UTF-8 text, so not a checkpoint") from None


def check_checkpoint(env: Any, name: str, text: str) -> dict[str, Any]:
    """{file, size, consistent, signed, signer, reason}: is the log an append-only extension of the
    checkpoint, and is the checkpoint signed by an operator of the roster in force at its size (its SSH
    signature and its signed-note lines by roster keys, each that is there)?"""
    try:
        parsed = cp.parse(text)
    except cp.BadCheckpoint as exc:
        raise BadInput(f"--checkpoint {name}: {exc}") from None
    doc: dict[str, Any] = {"file": name, "size": parsed.size, "consistent": False, "signed": False, "signer": None,
                           "reason": None}
    if parsed.origin != f"slotgen/{env.name}":
        doc["reason"] = f"it is a checkpoint of {parsed.origin}, not slotgen/{env.name}"
        return doc
    try:
        roster = _roster_in_force(env, parsed.size)
        if roster is None:
            doc["reason"] = (f"no roster was in force at size {parsed.size}: " + (
                "no operator exists before entry 1" if parsed.size == 0 else "the log has fewer entries"))
        else:
            allowed = [key for keys in roster.values() for key in keys]
            _, signer = cp.verify(text, allowed)
            doc["signed"] = True
            doc["signer"] = next((op for op, keys in roster.items()
                                  if any(_fingerprint(k) == signer.fingerprint for k in keys)), None)
    except (cp.BadCheckpoint, IntegrityFailure, ValueError, RecursionError) as exc:
        doc["reason"] = f"its signature is not by an operator of the roster in force at size {parsed.size} ({exc})"
    try:
        ok, why = cp.consistent(parsed, cp.leaves_of(env.log.lines()))
    except (OSError, IntegrityFailure) as exc:
        ok, why = False, f"the log cannot be read ({exc})"
    doc["consistent"] = ok
    if not ok or doc["reason"] is None:
        doc["reason"] = why if not ok else None
    return doc


def _fingerprint(line: str) -> str:
    from ..audit.sshkey import fingerprint

    return fingerprint(line)
