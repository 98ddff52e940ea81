"""One root error type, mapped to exit codes at one boundary (the CLI).

SPEC section 5: 0 ok, 1 verification failed (rolled back), 2 bad usage or bad
input, 3 refused by policy, 4 integrity failure, 5 the kill-switch could not be engaged (rollback).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_VERIFICATION_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_INTEGRITY = 4
EXIT_KILL_NOT_ENGAGED = 5


class SlotgenError(Exception):
    """A failure the operator must see as one line, with its exit code."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:  # one line, always
        return " ".join(self.message.split("\n"))


class BadInput(SlotgenError):
    """Bad usage or bad input (exit 2)."""

    exit_code = EXIT_BAD_INPUT


class Refused(SlotgenError):
    """Refused by policy (exit 3). `next_step` names what is allowed instead."""

    exit_code = EXIT_REFUSED

    def __init__(self, message: str, next_step: str | None = None) -> None:
        super().__init__(message)
        self.next_step = next_step


class IntegrityFailure(SlotgenError):
    """Audit log or controls failed verification (exit 4)."""

    exit_code = EXIT_INTEGRITY

    def __init__(self, message: str, first_bad: int | None = None) -> None:
        super().__init__(message)
        self.first_bad = first_bad


class VerificationFailed(SlotgenError):
    """A post-change verification failed and the kill-switch was engaged (exit 1)."""

    exit_code = EXIT_VERIFICATION_FAILED


class KillSwitchNotEngagedError(SlotgenError):
    """A rollback could not write the kill-switch (exit 5); the message says KILL-SWITCH NOT ENGAGED."""

    exit_code = EXIT_KILL_NOT_ENGAGED
