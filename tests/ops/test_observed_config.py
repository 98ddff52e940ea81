"""Where telemetry comes from (slotgen.yaml `environments.<E>.telemetry`) and the runbook's `observed:`
parameters: what `slotgen init` writes, the defaults for a runbook without them, and each bad value refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from slotgen_ops.errors import BadInput
from slotgen_ops.policy.config import WorkspaceConfig
from slotgen_ops.policy.yamlfile import load_yaml_model
from slotgen_ops.runbook.runbook import ObservedSettings, Runbook, check_runbook_schema
from slotgen_ops.workspace.init import WORKSPACE_YAML

SHIPPED = Path(__file__).resolve().parents[2] / "runbooks" / "beta-enable.yaml"


def _config(tmp_path: Path, text: str) -> WorkspaceConfig:
    path = tmp_path / "slotgen.yaml"
    path.write_text(text)
    return load_yaml_model(path, WorkspaceConfig)


def test_init_writes_a_telemetry_directory_per_environment(tmp_path):
    config = _config(tmp_path, WORKSPACE_YAML)
    assert config.environments["staging"].telemetry.files == "telemetry/staging"
    assert config.environments["production"].telemetry.files == "telemetry/production"
    assert config.environments["staging"].telemetry.prometheus is None


def test_no_telemetry_is_off_and_both_sources_or_none_are_refused(tmp_path):
    off = WORKSPACE_YAML.replace("    telemetry:\n      files: telemetry/staging\n", "")
    assert _config(tmp_path, off).environments["staging"].telemetry is None
    both = WORKSPACE_YAML.replace("      files: telemetry/staging\n",
                                  "      files: telemetry/staging\n      prometheus: http://127.0.0.1:9090\n")
    with pytest.raises(BadInput, match="exactly one of 'files: DIR' and 'prometheus: URL'"):
        _config(tmp_path, both)
    with pytest.raises(BadInput, match="exactly one"):
        _config(tmp_path, WORKSPACE_YAML.replace("      files: telemetry/staging\n", "      files: null\n"))


def test_the_shipped_runbook_holds_the_specified_parameters_and_its_schema_accepts_them():
    check_runbook_schema(SHIPPED)
    observed = Runbook.load(SHIPPED).observed
    assert observed == ObservedSettings(propagationSeconds=5, minEvents=100, minGateEvents=100, minOpenaiEvents=30,
                                        maxErrorRate=0.05, srmAlpha=0.001,
                                        required={"staging": False, "production": True, "default": True})
    assert observed.required_for("staging") is False and observed.required_for("production") is True
    assert observed.required_for("qa") is True  # default


def test_a_runbook_without_observed_gets_the_defaults(tmp_path):
    text = SHIPPED.read_text()
    path = tmp_path / "runbook.yaml"
    path.write_text(text[: text.index("\n# Observed verification")] + "\n")
    (tmp_path / "sample-jobs.jsonl").write_text("")
    assert Runbook.load(path, check_schema=True).observed == ObservedSettings()


@pytest.mark.parametrize("line, problem", [
    ("  propagationSeconds: -1", "must not be negative"),
    ("  maxErrorRate: 0", "out of range"),
    ("  srmAlpha: 0.9", "out of range"),
    ("  minEvents: 0", "at least 1"),
    ("  required: {staging: false}", "needs a 'default'"),
    ("  required: {staging: 'no', default: true}", "must be"),
])
def test_bad_parameters_are_refused_by_name(tmp_path, line, problem):
    text = SHIPPED.read_text()
    key = line.split(":")[0]
    lines = [line if candidate.startswith(key + ":") else candidate for candidate in text.splitlines()]
    path = tmp_path / "runbook.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(BadInput, match=problem):
        Runbook.load(path)
