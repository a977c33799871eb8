"""The log as a person reads it.

``day1-log.md`` parsed with CommonMark and GitHub's tables and task lists (the
rules GitHub renders it with): every list line an item, no heading that the
template did not write as one, nested and empty items kept. ``day1-log.html``
opened from disk in headless Chromium with the network off: the DOM checked
by a script injected into a copy of the page, and a screenshot kept with the
test's output. The log comes from a real run of the default workflow
(SmolLM2 on the embedded llama.cpp engine), every suite on, at small sizes
(``tests/data/default-tiny.yaml``: one trial, a few short answers).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
from conftest import run_snakemake
from test_comparison import finding
from test_report import config, metadata, render, row

from perflab.analyse.findings.prompt_length import PromptLengthVerdict
from perflab.models.smollm2 import MODEL_PATH
from perflab.present import page, report

ROOT = Path(__file__).resolve().parents[1]
RUN = "llamacpp-smollm2"  # the default run's name
FENCE = re.compile(r"^\s*(```|~~~)")
LIST_ITEM = re.compile(r"^(\s*)(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
TASK_ITEM = re.compile(r"^\s*[-*+] \[([ xX])\](?:[ \t]|$)")
EMPTY_ITEM = re.compile(r"^\s*(?:[-*+]|\d{1,9}[.)])$")
LABEL = re.compile(r"\*\*([^*]+)\*\*:")
ATX = re.compile(r"^(#{1,6}) (.*?)\s*$")
IMAGE = re.compile(r"^!\[[^\]]*\]\([^)]*\)$")
EMPTY = ("list_item_open", "list_item_close")
SECTIONS = [
    "Overview",
    "Time Tracking",
    "Setup Checklist",
    "Benchmark Results Summary",
    "Key Learnings",
    "Observations & Insights",
    "Questions & Follow-ups",
    "Challenges Faced",
    "Performance Analysis",
    "GitHub Documentation",
    "Self-Assessment",
    "Next Day Preparation",
    "Reflections",
    "Time Summary",
    "Resources Used",
    "Appendix: Raw Notes",
]


def prose_lines(text: str) -> list[str]:
    """The Markdown's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


class Expected:
    """What the Markdown source says the page has, read line by line."""

    def __init__(self, text: str):
        lines = prose_lines(text)
        self.items = [line for line in lines if LIST_ITEM.match(line)]
        self.nested = [line for line in self.items if LIST_ITEM.match(line)[1]]
        self.tasks = [TASK_ITEM.match(line)[1] for line in lines if TASK_ITEM.match(line)]
        self.empty = [line for line in lines if EMPTY_ITEM.match(line)]
        self.headings = [unescape(ATX.match(line)[2]) for line in lines if ATX.match(line)]
        self.labels = {label.strip() for line in lines for label in LABEL.findall(line)}
        self.images = [line for line in lines if IMAGE.match(line)]
        self.tables = [line for line in lines if re.match(r"^\|(\s*:?-+:?\s*\|)+$", line)]
        self.icons = sum(text.count(mark) for mark in page.ICONS)
        self.verdicts = text.count("**Verdict: ")


def depths(tokens) -> list[tuple[object, int]]:
    """Every token with the number of lists it is inside."""
    found, depth = [], 0
    for token in tokens:
        if token.type in ("bullet_list_close", "ordered_list_close"):
            depth -= 1
        found.append((token, depth))
        if token.type in ("bullet_list_open", "ordered_list_open"):
            depth += 1
    return found


def check_markdown(text: str) -> None:
    """The structure GitHub's rules give ``text`` is the one its lines say."""
    expected = Expected(text)
    tokens = page.parser().parse(text)
    headings = [t for t in tokens if t.type == "heading_open"]
    setext = [t.map for t in headings if not t.markup.startswith("#")]
    assert not setext, f"setext headings (a paragraph line above a lone '-') at lines {setext}"
    titles = [b.content for a, b in zip(tokens, tokens[1:]) if a.type == "heading_open"]
    levels = [a.tag for a in tokens if a.type == "heading_open"]
    assert [unescape(t) for t in titles] == expected.headings
    assert [t for t in titles if t.rstrip(":") in expected.labels] == []
    sections = [title for title, level in zip(titles, levels) if level == "h2"]
    assert sections == SECTIONS
    # one source line, one block: no list line or label run into the paragraph above it
    joined = [t.content for t in tokens if t.type == "inline" and "\n" in t.content]
    assert joined == [], "lines run together into one paragraph"
    items = [(t, d) for t, d in depths(tokens) if t.type == "list_item_open"]
    assert len(items) == len(expected.items)
    assert len([t for t, d in items if d > 1]) == len(expected.nested) > 0
    empty = [a for a, b in zip(tokens, tokens[1:]) if (a.type, b.type) == EMPTY]
    assert len(empty) == len(expected.empty) > 0
    assert sum(t.type == "table_open" for t in tokens) == len(expected.tables) > 0
    for i, token in enumerate(tokens):  # a chart is a paragraph of its own, outside any list
        if token.type == "inline" and any(c.type == "image" for c in token.children):
            assert len(token.children) == 1 and tokens[i - 1].level == 0, token.content
    body = page.render_body(text, {})
    checkboxes = re.findall(r"<input [^>]*>", body)
    assert len(checkboxes) == len(expected.tasks) > 0
    assert all('type="checkbox"' in c and "disabled" in c for c in checkboxes)
    assert sum("checked" in c for c in checkboxes) == expected.tasks.count("x")
    assert body.count('<strong class="verdict ') == expected.verdicts
    said_again = re.findall(r"\*\*Verdict: ([^*]+)\*\* \1:", text, re.IGNORECASE)
    assert said_again == [], "an answer that repeats its badge's word"


def test_a_log_from_constructed_findings_has_the_structure_its_lines_say():
    summary = pl.DataFrame([row(), row(error_classes="connect", n_errors=1, n_requests=5)])
    text, _ = render(summary, metadata(), config())
    check_markdown(text)
    assert Expected(text).empty  # the seed's slots: empty items, not headings


def test_an_empty_slot_after_a_label_would_be_a_heading():
    """What the checks above guard against: GitHub's rules on the old layout."""
    tokens = page.parser().parse("**Aha moments**:\n-\n\n**Solutions**:\n- a\n- b\n")
    assert tokens[0].type == "heading_open" and tokens[0].markup == "-"


def test_the_answer_after_a_badge_does_not_say_its_word_again():
    inconclusive, linear = PromptLengthVerdict.INCONCLUSIVE, PromptLengthVerdict.LINEAR
    assert report.verdict(inconclusive, "Inconclusive: rests on <x>") == (
        "**Verdict: inconclusive** Rests on &lt;x&gt;"
    )
    assert report.verdict(linear, "Linear: TTFT grows") == "**Verdict: linear** TTFT grows"
    assert report.verdict(linear, "Linearly *so*") == "**Verdict: linear** Linearly \\*so\\*"
    assert report.verdict(None, "no verdict: *x*") == "no verdict: \\*x\\*"


def test_verdict_badge_takes_any_value_and_no_class_from_a_value():
    body = page.render_body(
        "- **Verdict: equivalent** same\n- **Verdict: Some_New value** x\n- **bold** y", {}
    )
    assert '<strong class="verdict verdict-equivalent">equivalent</strong>' in body
    assert '<strong class="verdict verdict-some-new-value">Some_New value</strong>' in body
    assert "<strong>bold</strong>" in body
    hostile = page.sanitise('<strong class="x verdict-a">t</strong><li class="evil">u</li>')
    assert 'class="verdict-a"' in hostile and "evil" not in hostile and '"x' not in hostile


def test_each_row_of_the_comparison_of_targets_shows_its_verdict_as_a_badge():
    found = SimpleNamespace(comparison=finding(), capacity=())  # "slow": decode 1.5x slower
    context = {"f": found, "run": "two", "perflab_version": "0", "charts": {}}
    context |= report.comparison_context(found)
    body = page.render_body(report.render_template("comparison.md.j2", **context), {})
    rows = [*context["comparison_rows"], *(r for _, p in context["comparison_points"] for r in p)]
    last_cells = re.findall(r"<td>([^<]*(?:<strong[^>]*>[^<]*</strong>[^<]*)?)</td>\n</tr>", body)
    verdict_cells = last_cells[len(context["comparison_sizes"]) :]
    assert len(verdict_cells) == len(rows) and rows
    for line, cell in zip(rows, verdict_cells, strict=True):
        if line.verdict is None:
            assert cell == "baseline" and line.target == "fast"
        else:
            word = line.verdict.value
            badge = f'<strong class="verdict verdict-{word}">{word}</strong> '
            assert cell == badge + html.escape(line.detail, quote=False)
            assert not line.detail.startswith(word)
            assert line.detail[:1] == line.detail[:1].upper()  # a sentence of its own
    words = {r.verdict.value for r in rows if r.verdict}
    assert {"slower", "equivalent"} <= words
    assert any(r.detail.startswith("Within ±") for r in rows if r.verdict)


# The log from a real run, in the browser ------------------------------------


@pytest.fixture(scope="module")
def reports(copy_workflow, smollm2_path) -> Path:
    """The default run (config/config.yaml) with every suite trimmed to a few requests."""
    workdir = copy_workflow(cached=(MODEL_PATH,))  # the GGUF in place: no fetch planned
    shutil.copy(ROOT / "tests" / "data" / "default-tiny.yaml", workdir / "tiny.yaml")
    started = time.monotonic()
    result = run_snakemake(workdir, "--cores", "2", "--configfile", "tiny.yaml")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "fetch_smollm2" not in result.stderr
    print(f"the default run, trimmed: {time.monotonic() - started:.0f} s")
    return workdir / "reports" / RUN


@pytest.mark.slow
def test_the_run_log_has_the_structure_its_lines_say(reports):
    text = (reports / "day1-log.md").read_text()
    check_markdown(text)
    expected = Expected(text)
    assert len(expected.images) >= 5 and expected.verdicts >= 3
    assert "- [x] Setup & Installation (2h)\n  - Started: " in text


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; CI needs it (.ci/run installs it with apt-get)")
    pytest.skip("chromium is not installed (apt-get install chromium fonts-dejavu-core)")


def offline() -> list[str]:
    """A command prefix that runs the browser in a network namespace of its own."""
    for prefix in (["unshare", "--net"], ["unshare", "--user", "--map-root-user", "--net"]):
        if shutil.which("unshare") and subprocess.run([*prefix, "true"]).returncode == 0:
            return prefix
    if os.environ.get("CI") == "true":
        pytest.fail("unshare cannot make a network namespace here (needs root or user namespaces)")
    pytest.skip("unshare cannot make a network namespace here (needs root or user namespaces)")


# Background traffic of the browser itself is switched off or has no page as
# its origin; every request the page makes carries it (network_isolation_key).
BROWSER = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=socks5://127.0.0.1:9",
    "--hide-scrollbars",
    "--virtual-time-budget=3000",
]

PROBE = """<script>
(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.width, r.height]; };
  const text = e => e.textContent.replace(/\\s+/g, " ").trim();
  const style = getComputedStyle(document.body);
  const content = document.body.clientWidth - parseFloat(style.paddingLeft)
    - parseFloat(style.paddingRight);
  const found = {
    content_width: content,
    height: document.documentElement.scrollHeight,
    headings: [...document.querySelectorAll("h1,h2,h3,h4,h5,h6")].map(text),
    items: document.querySelectorAll("li:not(nav li)").length,
    nested: document.querySelectorAll("li:not(nav li) li").length,
    empty: [...document.querySelectorAll("li:not(nav li)")].filter(li => !text(li)).length,
    toc: [...document.querySelectorAll("nav.toc a")].map(a =>
      [text(a), !!document.getElementById(decodeURIComponent(a.hash.slice(1)))]),
    checkboxes: [...document.querySelectorAll("input")].map(i =>
      [i.type, i.checked, i.disabled, !!i.closest("li.task-list-item")]),
    charts: [...document.querySelectorAll("figure.chart")].map(f =>
      f.querySelector(":scope > svg") ? box(f.querySelector(":scope > svg")) : null),
    clipped: [...document.querySelectorAll("figure.chart > svg")].flatMap(svg => {
      const edge = svg.getBoundingClientRect();
      return [...svg.querySelectorAll("text")].filter(t => {
        const r = t.getBoundingClientRect();
        return r.width && (r.left < edge.left - 1 || r.right > edge.right + 1);
      }).map(text);
    }),
    icons: [...document.querySelectorAll("svg.icon")].map(box),
    badges: [...document.querySelectorAll("strong.verdict")].map(b =>
      [text(b), getComputedStyle(b).backgroundColor, box(b)]),
    images: document.images.length,
    marks: (document.body.innerText.match(/[\\u2705\\u2B1C\\u274C]|\\uD83D\\uDFE1/g) || []).length,
    resources: performance.getEntriesByType("resource").map(e => e.name),
  };
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
})();
</script>"""


def page_requests(net_log: Path) -> list[str]:
    """URLs of every request made on behalf of a page (not the browser's own)."""
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        event["params"]["url"]
        for event in log["events"]
        if event["type"] == start
        and "url" in event.get("params", {})
        and event["params"].get("network_isolation_key", "null null") != "null null"
    ]


def browse(html_path: Path, out: Path, *args: str) -> subprocess.CompletedProcess:
    command = [*offline(), chromium(), *BROWSER, *args, html_path.as_uri()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=out)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def in_browser(reports, tmp_path_factory) -> tuple[dict, Path, list[str]]:
    """What the injected script found, the screenshot, the requests the page made."""
    out = tmp_path_factory.mktemp("browser")
    original = (reports / "day1-log.html").read_text()
    assert "<script" not in original.lower()
    probe = out / "probe.html"
    probe.write_text(original.replace("</body>", PROBE + "</body>"))
    net_log = out / "net-log.json"
    dumped = browse(probe, out, f"--log-net-log={net_log}", "--window-size=1280,900",
                    "--dump-dom").stdout  # fmt: skip
    found = json.loads(html.unescape(re.search(r'<pre id="probe">(.*?)</pre>', dumped, re.S)[1]))
    copy = out / "day1-log.html"  # the screenshot is of the page as written
    copy.write_text(original)
    screenshot = out / "day1-log.png"
    height = min(found["height"] + 40, 20000)
    browse(copy, out, f"--screenshot={screenshot}", f"--window-size=1280,{height}")
    print(f"screenshot of the log: {screenshot}")
    return found, screenshot, page_requests(net_log)


@pytest.mark.slow
def test_the_page_shows_what_the_markdown_means(reports, in_browser):
    found, _, _ = in_browser
    expected = Expected((reports / "day1-log.md").read_text())
    assert found["headings"] == [h.replace("  ", " ") for h in expected.headings]
    assert [h for h in found["headings"] if h.rstrip(":") in expected.labels] == []
    assert [name for name, _ in found["toc"]] == SECTIONS
    assert all(target for _, target in found["toc"])
    assert found["items"] == len(expected.items)
    assert found["nested"] == len(expected.nested)
    assert found["empty"] == len(expected.empty)
    assert [c[0] for c in found["checkboxes"]] == ["checkbox"] * len(expected.tasks)
    assert all(disabled and in_task for _, _, disabled, in_task in found["checkboxes"])
    assert [checked for _, checked, _, _ in found["checkboxes"]] == [
        mark == "x" for mark in expected.tasks
    ]
    assert found["badges"] and len(found["badges"]) == expected.verdicts
    for word, background, (width, _) in found["badges"]:
        assert word and background not in ("rgba(0, 0, 0, 0)", "transparent") and width > 0


@pytest.mark.slow
def test_every_chart_is_an_svg_as_wide_as_the_page(reports, in_browser):
    found, _, _ = in_browser
    expected = Expected((reports / "day1-log.md").read_text())
    assert len(found["charts"]) == len(expected.images) >= 5
    assert found["images"] == 0  # every chart inlined: nothing to load
    assert found["clipped"] == [], "chart text drawn past its chart's edge"
    for size in found["charts"]:
        assert size is not None, "a chart figure without its SVG"
        width, height = size
        assert width >= 0.95 * found["content_width"] and height > 0.2 * width


@pytest.mark.slow
def test_status_marks_are_drawn_without_an_emoji_font(reports, in_browser):
    found, _, _ = in_browser
    expected = Expected((reports / "day1-log.md").read_text())
    assert found["marks"] == 0
    assert len(found["icons"]) == expected.icons > 0
    assert all(width > 0 and height > 0 for width, height in found["icons"])


@pytest.mark.slow
def test_the_page_loads_nothing_and_its_screenshot_is_kept(in_browser):
    found, screenshot, requests = in_browser
    assert found["resources"] == [] and requests == []
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000


@pytest.mark.slow
def test_the_page_prints_on_pages_of_its_own(reports, tmp_path):
    pdf = tmp_path / "day1-log.pdf"
    html_path = tmp_path / "day1-log.html"
    shutil.copy(reports / "day1-log.html", html_path)
    browse(html_path, tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}")
    print(f"the log printed: {pdf}")
    data = pdf.read_bytes()
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    assert data[:5] == b"%PDF-" and pages >= 5  # the whole log, not its first screen
