"""`slotgen audit report` (SPEC section 11): one self-contained HTML page for approvers, loaded in a real
headless Chromium from a file and judged on the DOM it renders: integrity status, the exposure chart (a marker
per change, rollbacks red), every change's operator, signer key, approver and decision record; recorded text
only ever as text (no script, no injected element or handler); nothing fetched from anywhere."""

from __future__ import annotations

import shutil
import struct
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from slotgen_ops.audit.report_html import CSP
from slotgen_ops.runtime.fakeserver import FakeOpenAIServer

from .helpers import assert_one_line_error, slotgen

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
from .review_scenario import DR_LINK, DR_TEXT, DR_URL, OPERATOR, REASON, build_workspace

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict[str, str | None], parent: "Node | None") -> None:
        self.tag, self.attrs, self.parent, self.children = tag, attrs, parent, []

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for child in self.children:
            if isinstance(child, Node):
                yield from child.walk()

    def find(self, tag: str, cls: str | None = None) -> list["Node"]:
        return [n for n in self.walk() if n.tag == tag and (cls is None or cls in (n.attrs.get("class") or "").split())]


class DomReader(HTMLParser):
    """The DOM Chromium serialised (--dump-dom) as a tree of Nodes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = self.at = Node("#document", {}, None)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, dict(attrs), self.at)
        self.at.children.append(node)
        if tag not in VOID:
            self.at = node

    def handle_startendtag(self, tag, attrs):
        self.at.children.append(Node(tag, dict(attrs), self.at))

    def handle_endtag(self, tag):
        node = self.at
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.at = node.parent

    def handle_data(self, data):
        self.at.children.append(data)


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.fail("chromium is not installed: the report is tested in a real browser "
                    "(apt-get install -y --no-install-recommends chromium; .ci/run installs it)")
    return found


def browse(page: Path, profile: Path, *what: str) -> subprocess.CompletedProcess:
    """Headless Chromium on the page as a file, with every host name unresolvable (nothing can be fetched)."""
    args = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", f"--user-data-dir={profile}",
            "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", *what, page.resolve().as_uri()]
    done = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@pytest.fixture(scope="module")
def reviewed(tmp_path_factory):
    """The workspace, its report written by the real CLI, the rows `audit show --json` gives, and the DOM
    Chromium rendered from the file."""
    base = tmp_path_factory.mktemp("report")
    with FakeOpenAIServer("ok") as server:
        ws = build_workspace(base / "ws", server.base_url)
    page = base / "staging-audit.html"
    made = slotgen("audit", "report", "--env", "staging", "--output", str(page), "--json", "--workspace", str(ws))
    assert made.code == 0, made.stderr
    rows = slotgen("audit", "show", "--env", "staging", "--json", "--workspace", str(ws)).json()["changes"]
    dump = browse(page, base / "profile", "--dump-dom")
    reader = DomReader()
    reader.feed(dump.stdout)
    return {"ws": ws, "page": page, "doc": made.json(), "rows": rows, "dom": reader.root, "base": base}


def test_the_command_writes_the_page_and_says_so(reviewed):
    doc, rows = reviewed["doc"], reviewed["rows"]
    assert doc == {"ok": True, "env": "staging", "output": str(reviewed["page"]),
                   "changes": sum(1 for r in rows if not r["refused"]), "valid": True}
    html = reviewed["page"].read_text(encoding="utf-8")
    assert f'<meta http-equiv="Content-Security-Policy" content="{CSP}">' in html


def test_the_chart_marks_every_change_and_every_rollback(reviewed):
    dom, rows = reviewed["dom"], reviewed["rows"]
    svgs = dom.find("svg")
    assert len(svgs) == 1 and svgs[0].attrs.get("id") == "exposure-chart"
    chart = svgs[0]
    markers = chart.find("circle", "marker")
    made = [r for r in rows if not r["refused"]]
    assert len(markers) == len(made) == 11
    red = chart.find("circle", "rollback")
    assert len(red) == sum(1 for r in made if r["rollback"]) == 2
    assert all(c.attrs["fill"] == "#c62828" for c in red)
    assert [m.attrs["data-seq"] for m in markers] == ["" if r["seq"] is None else str(r["seq"]) for r in made]
    assert len(chart.find("path", "rollout-line")) == 1
    assert chart.find("rect", "kill-band") and chart.find("rect", "allowlist-band")
    levels = [t.text() for t in chart.find("text", "level")]
    assert levels == ["0%", "1%", "5%", "1%"]  # 0, the canary, 5, the step down
    ticks = [t.text() for t in chart.find("text", "tick")]
    assert len(ticks) == 6 and all(len(t.split(":")) == 3 for t in ticks)


def test_every_change_shows_operator_key_approver_record_and_verification(reviewed):
    dom, rows = reviewed["dom"], reviewed["rows"]
    table = [t for t in dom.find("table") if t.attrs.get("id") == "timeline"][0]
    trs = table.find("tbody")[0].find("tr")
    assert len(trs) == len(rows)
    for tr, row in zip(trs, rows):
        cells = {td.attrs.get("class"): td for td in tr.find("td")}
        applied = cells["applied-by"].text()
        assert (row["appliedBy"]["operator"] or "(none)") in applied
        if row["appliedBy"]["key"]:
            assert row["appliedBy"]["key"] in applied
        if row["approval"]:
            approved = cells["approved-by"].text()
            assert row["approval"]["approver"] in approved and row["approval"]["id"] in approved
            assert row["approval"]["approverKey"] in approved
        assert cells["record"].text() == (row["decisionRecord"] or "")
        assert ("refused" in tr.attrs["class"].split()) == row["refused"]
        assert ("rollback" in tr.attrs["class"].split()) == (row["rollback"] and not row["refused"])
    canary = next(tr for tr, row in zip(trs, rows) if row["step"] == "rollout-canary")
    assert "step verify (seq 9): pass" in canary.text()
    integrity = [d for d in dom.find("div") if d.attrs.get("id") == "integrity"][0]
    assert integrity.attrs["data-valid"] == "true" and "Integrity: valid" in integrity.text()
    assert "break-glass" in trs[-1].attrs["class"] and "NOT yet in the audit log" in trs[-1].text()


def test_recorded_text_is_only_ever_text(reviewed):
    dom = reviewed["dom"]
    assert dom.find("script") == [], "no script element, whatever the log says"
    assert dom.find("img") == [] and dom.find("iframe") == [] and dom.find("object") == []
    for node in dom.walk():
        assert not any(name.startswith("on") for name in node.attrs), (node.tag, node.attrs)
        assert "src" not in node.attrs and node.tag not in ("link", "image", "use"), (node.tag, node.attrs)
    body = dom.find("body")[0].text()
    for hostile in (OPERATOR, REASON, DR_TEXT, DR_LINK):
        assert hostile in body, hostile
    links = dom.find("a")
    assert [a.attrs["href"] for a in links] == [DR_URL], "only an https URL is a link"
    assert links[0].text() == DR_URL and links[0].attrs["rel"] == "noopener noreferrer"
    record_cells = [td.text() for td in dom.find("td", "record")]
    assert DR_TEXT in record_cells and DR_LINK in record_cells, "a decision record that is no URL stays text"


def test_a_screenshot_of_the_page(reviewed):
    shot = reviewed["base"] / "staging-audit.png"
    browse(reviewed["page"], reviewed["base"] / "profile-shot", f"--screenshot={shot}", "--window-size=1280,1800")
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (1280, 1800)
    assert len(data) > 20_000, "a blank page compresses to almost nothing"
    kept = ARTIFACTS / "audit-report-staging.png"  # kept after the run (CI can upload test-artifacts/)
    kept.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, kept)
    shutil.copyfile(reviewed["page"], ARTIFACTS / "audit-report-staging.html")
    print(f"\naudit report screenshot: {kept}\naudit report page: {ARTIFACTS / 'audit-report-staging.html'}")


def test_checkpoints_and_a_failing_log_are_stated_at_the_top(tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    point = tmp_path / "cp.txt"
    assert slotgen("audit", "checkpoint", "--env", "production", "--operator", "approver", "--output", str(point),
                   "--workspace", str(root)).code == 0
    page = tmp_path / "p.html"
    good = slotgen("audit", "report", "--env", "production", "--output", str(page), "--checkpoint", str(point),
                   "--workspace", str(root))
    assert good.code == 0, good.stderr
    html = page.read_text()
    assert 'data-valid="true"' in html and "the log extends it" in html and str(point) in html
    log = root / "environments" / "production.audit.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"init"', b'"INIT"'))
    bad = slotgen("audit", "report", "--env", "production", "--output", str(page), "--force", "--json",
                  "--workspace", str(root))
    assert bad.code == 4 and "failed verification at seq 1" in bad.stderr
    assert bad.json() == {"ok": False, "env": "production", "output": str(page), "changes": 1, "valid": False}
    html = page.read_text()
    assert 'data-valid="false"' in html and "Integrity: INVALID" in html and "first bad entry seq 1" in html


def test_output_never_overwrites_a_workspace_file_or_an_existing_file_without_force(tmp_path):
    root = tmp_path / "ws"
    assert slotgen("init", str(root)).code == 0
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    for target in (root / "slotgen.yaml", root / "environments" / "staging.html"):
        for force in ([], ["--force"]):
            r = slotgen("audit", "report", "--env", "staging", "--output", str(target), *force, "--workspace", str(root))
            assert_one_line_error(r, 2)
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before
    kept = tmp_path / "kept.html"
    kept.write_text("keep me")
    assert_one_line_error(slotgen("audit", "report", "--env", "staging", "--output", str(kept),
                                  "--workspace", str(root)), 2)
    assert kept.read_text() == "keep me"
    assert slotgen("audit", "report", "--env", "staging", "--output", str(kept), "--force",
                   "--workspace", str(root)).code == 0
    assert kept.read_text().startswith("<!DOCTYPE html>")
