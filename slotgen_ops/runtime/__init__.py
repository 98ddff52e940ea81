"""Executing a job as the runtime does: executors (stub, OpenAI), telemetry sinks, schema validation,
the runtime's allowlist file, and the rehearsal endpoint (an OpenAI-compatible server on 127.0.0.1)."""

from ..lazy import exports

_WHERE = {
    "Execution": "executor",
    "ExecutorConfig": "config",
    "FakeOpenAIServer": "fakeserver",
    "JsonlTelemetrySink": "telemetry",
    "MemoryTelemetrySink": "telemetry",
    "OpenAIExecutor": "openai_executor",
    "Runtime": "executor",
    "StubExecutor": "executor",
    "TelemetrySink": "telemetry",
    "load_allowlist": "allowlist_file",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
