"""`slotgen audit checkpoint` and `audit verify --checkpoint` (SPEC section 9).

A checkpoint is signed by an operator of the roster in force, with the key
that proves them (the same --key / SLOTGEN_SIGNING_KEY as their entries), over
the log as it stands: its complete lines, read under the shared lock. It is
kept outside the workspace (a ticket, a chat message, another machine): a
workspace that rewrites its own log, even re-signing every entry with an
insider's key, no longer extends a checkpoint taken before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..audit import checkpoint as cp
from ..errors import BadInput, IntegrityFailure, Refused
from .authority import Actor, require_key


def _roster_in_force(env: Any, size: int) -> dict[str, tuple[str, ...]]:
    """{operator id: keys} of the roster in force after entry `size` (the head's, if the log is shorter)."""
    state = None
    for entry in env.log.entries():
        state = entry.get("state")
        if entry.get("seq") == size:
            break
    policy = (state or {}).get("policy") if isinstance(state, dict) else None
    roster = (policy or {}).get("roster") or {}
    return {str(op.get("id")): tuple(op.get("keys") or ()) for op in roster.get("operators") or ()
            if isinstance(op, dict)}


def make_checkpoint(env: Any, actor: Actor) -> dict[str, Any]:
    """A signed checkpoint of the log as it now stands: {text, size, signer, fingerprint}."""
    from ..audit import merkle
    from .chain import require_sound

    from dataclasses import replace

    from .policy import accepted_actor, accepted_roster

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
    from ..audit import sshsig

    assert actor.key is not None
    try:  # outside any lock: ssh-agent or a hardware key may take its time
        signature = sshsig.sign(text, actor.key, cp.NAMESPACE)
    except sshsig.SigningError as exc:
        raise Refused(f"cannot sign the checkpoint as {actor.claimed}: {exc}") from None
    full = text.decode() + "\n" + signature
    cp.verify(full, actor.operator.keys)  # what was signed is what a verifier will accept
    return {"text": full, "size": len(hashes), "signer": actor.claimed, "fingerprint": actor.fingerprint}


def read_checkpoint(path: Path) -> tuple[str, str]:
    """(name, text) of a checkpoint file; BadInput (exit 2) if it cannot be read."""
    try:
        return str(path), Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"--checkpoint {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None


def check_checkpoint(env: Any, name: str, text: str) -> dict[str, Any]:
    """{file, size, consistent, signed, signer, reason}: is the log an append-only extension of the
    checkpoint, and is the checkpoint signed by an operator of the roster in force at its size?"""
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
        allowed = [key for keys in roster.values() for key in keys]
        _, signer = cp.verify(text, allowed)
        doc["signed"] = True
        doc["signer"] = next((op for op, keys in roster.items()
                              if any(_fingerprint(k) == signer.fingerprint for k in keys)), None)
    except (cp.BadCheckpoint, IntegrityFailure, ValueError) as exc:
        doc["reason"] = f"its signature is not by an operator of the roster in force ({exc})"
    try:
        ok, why = cp.consistent(parsed, cp.leaves_of(env.log.lines()))
    except (OSError, IntegrityFailure) as exc:
        ok, why = False, f"the log cannot be read ({exc})"
    doc["consistent"] = ok
    if not ok or doc["reason"] is None:
        doc["reason"] = why if not ok else None
    return doc


def _fingerprint(line: str) -> str:
    from ..audit.sshsig import fingerprint

    return fingerprint(line)
