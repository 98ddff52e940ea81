"""Executing a job: executors (stub, OpenAI), telemetry, schema validation.

Modules, imported where needed so the light ones stay light:

- `executor`: `Runtime`, `StubExecutor`, `OpenAIExecutor`, `Execution`
  (imports neither `openai` nor `jsonschema` until the OpenAI path runs);
- `config`: `ExecutorConfig` (pydantic);
- `telemetry`: `TelemetrySink`, `JsonlTelemetrySink`, `MemoryTelemetrySink`;
- `schemas`: `validator`, `schema_errors` (jsonschema, lazily);
- `fakeserver`: `FakeOpenAIServer`, an OpenAI-compatible endpoint on 127.0.0.1
  for tests and the demo;
- `allowlist_file`: `load_allowlist`.
"""
