"""The Phase 5 plan as data and its judge: the runbook, the state replay of a log, the next step and
its guidance, the expected decisions of sample jobs, and counting a population of jobs."""

from ..lazy import exports

_WHERE = {
    "Judgement": "judge",
    "Runbook": "runbook",
    "SAFE_CONTROLS": "state",
    "STEP_ORDER": "runbook",
    "Step": "runbook",
    "apply": "state",
    "describe_next": "guidance",
    "explain_position": "guidance",
    "next_step": "judge",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
