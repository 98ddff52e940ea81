"""Executing a job as the runtime does: executors (stub, OpenAI), telemetry sinks, schema validation,
the runtime's allowlist file, the rehearsal endpoint (OpenAI-compatible, 127.0.0.1) and rehearsal hosts."""

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
    "TrafficHost": "traffic",
    "load_allowlist": "allowlist_file",
}
__all__ = sorted(_WHERE)
__getattr__ = exports(__name__, _WHERE)
