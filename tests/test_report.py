"""The log from constructed findings: wording, n/a, and that nothing from a
config, a server or a model becomes markup."""

import importlib
import re

import polars as pl
import pytest

from perflab.analyse import findings
from perflab.measure.metadata import ExperimentMetadata
from perflab.present import report

SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
LINK = "[click](javascript:alert(3))"
HOSTILE = f"{SCRIPT} {IMG} {LINK} a|b `code` *bold*"


def row(**values) -> dict:
    return {
        "experiment_id": "short-t0.7-w1-n4-r1",
        "condition_id": "short-t0.7-w1-n4",
        "trial": 1,
        "repeats": 1,
        "prompt_name": "short",
        "temperature": 0.7,
        "workers": 1,
        "suites": "basic",
        "n_requests": 4,
        "n_ok": 4,
        "n_errors": 0,
        "e2e_mean_s": 1.0,
        "e2e_ci95_s": 0.01,
        "ttft_mean_s": 0.2,
        "tps_mean": 20.0,
        "output_tokens_mean": 16.0,
        "prompt_tokens_mean": 5.0,
        "req_per_s": 1.0,
        "error_classes": None,
    } | values


def metadata(**engine) -> list[dict]:
    return [
        {
            "experiment": {"id": "short-t0.7-w1-n4-r1", "suites": ["basic"]},
            "engine": {"engine": "ollama", "model": "m", "engine_version": "1"} | engine,
            "host": {"cpu_model": "cpu", "logical_cores": 2, "ram_gb": 8.0, "os": "Linux"},
            "run": {"started": 1_700_000_000.0, "ended": 1_700_000_060.0},
            "perflab_version": "0",
            "config_hash": "abc",
        }
    ]


def read(meta: list[dict]) -> list[ExperimentMetadata]:
    """The experiments' metadata.json as the log's rules read it."""
    return [ExperimentMetadata.from_json(m) for m in meta]


def config(prompt: str = "What is AI?", model: str = "m") -> dict:
    return {
        "run": "test",
        "engine": {"name": "ollama", "model": model, "model_path": None},
        "generation": {"keep_alive": "5m"},
        "warmup_requests": 1,
        "prompts": {"short": prompt},
        "suites": {"basic": {"prompts": ["short"]}},
        "tiny_model": {},
    }


def render(summary: pl.DataFrame, meta: list[dict], cfg: dict) -> tuple[str, str]:
    meta = read(meta)
    context = findings.context_from_metadata(meta, cfg, "results/test")
    found = findings.compute(summary, context, disk_path=".")
    text = report.render_template(
        "day1-log.md.j2", **report.build_context(found, meta, cfg, {}, ["results/test/x.json"])
    )
    return text, report.render_html(text, f"Day 1 log — {cfg['run']}", {})


def test_a_command_is_one_code_span_whatever_it_holds():
    assert report.code_span("snakemake --forcerun a/metadata.json") == (
        "`snakemake --forcerun a/metadata.json`"
    )
    # a backtick run gets a longer fence, an edge backtick padding, a newline a space
    assert report.code_span("echo `x` ``y``") == "``` echo `x` ``y`` ```"
    assert report.code_span("`ls`") == "`` `ls` ``"
    assert report.code_span("a\nb|c", in_table=True) == "`a b\\|c`"
    html = report.render_html(f"| x |\n|---|\n| {report.code_span('a|b <i>', True)} |\n", "t", {})
    assert "<code>a|b &lt;i&gt;</code>" in html


def test_markdown_escape_neutralises_markup():
    escaped = report.markdown_escape(HOSTILE)
    assert "<" not in escaped and ">" not in escaped
    assert "\\[click\\]" in escaped and "a\\|b" in escaped and "\\`code\\`" in escaped
    assert report.markdown_escape(report.Verbatim("x ``` y")) == "x ''' y"


def test_script_tags_through_every_field_never_become_markup():
    summary = pl.DataFrame(
        [
            row(error_classes=HOSTILE, n_errors=1, n_requests=5),
            row(
                experiment_id=f"x{SCRIPT}-r1",
                condition_id=f"x{SCRIPT}",
                prompt_name=HOSTILE,
                suites="basic,temperature",
                temperature=1.5,
                interference_cpu_pct_mean=300.0,
            ),
        ]
    )
    meta = metadata(
        model=HOSTILE,
        engine_version=HOSTILE,
        model_digest=HOSTILE,
        model_details={"family": HOSTILE},
        host=f"http://h/{SCRIPT}",
    )
    meta[0]["host"]["cpu_model"] = HOSTILE
    text, html = render(summary, meta, config(prompt=HOSTILE, model=HOSTILE))
    # outside code blocks and code spans (where Markdown shows text as text) nothing is markup
    prose = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    assert prose.count("```") == 0  # no value closed a code block early
    prose = re.sub(r"(?<!`)(`+)(?!`).*?(?<!`)\1(?!`)", "", prose)
    assert "<script" not in prose.lower() and "<img" not in prose.lower()
    assert "<script" not in html.lower() and "<img" not in html.lower()
    assert not re.search(r"<[^>]+\bon\w+\s*=", html)  # no event handler on any tag
    assert "javascript:" not in "".join(re.findall(r'href="([^"]*)"', html))
    links = re.findall(r"<a [^>]*>", html)  # only the table of contents' own anchors
    assert links and all(re.fullmatch(r'<a href="#[a-z0-9-]+"[^>]*>', link) for link in links)
    # a pipe in a value does not break a table row: every row keeps its cells
    for table in re.findall(r"<table>.*?</table>", html, re.S):
        counts = {
            len(re.findall(r"<t[dh][ >]", r)) for r in re.findall(r"<tr>.*?</tr>", table, re.S)
        }
        assert len(counts) == 1


def test_html_shows_raw_html_as_text_and_drops_javascript_links():
    html = report.render_html(
        f"# t\n\n{SCRIPT}\n\n{IMG}\n\n[x](javascript:alert(1)) [ok](https://example.org)",
        f"title {SCRIPT}",
        {},
    )
    # raw HTML is shown as the text it is, never parsed as a tag
    assert "<script" not in html.lower() and "&lt;script&gt;alert(1)" in html
    assert "<img" not in html and not re.search(r"<[^>]+\bon\w+\s*=", html)
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert hrefs == ["https://example.org"]


def test_all_requests_failed_says_na_with_the_count():
    failed = row(
        n_ok=0, n_errors=100, n_requests=100, e2e_mean_s=None, ttft_mean_s=None, tps_mean=None,
        error_classes="connect", e2e_ci95_s=None, output_tokens_mean=None,
        prompt_tokens_mean=None, req_per_s=0.0,
    )  # fmt: skip
    text, _ = render(pl.DataFrame([failed]), metadata(), config())
    assert "**Mean Latency**: n/a: all 100 failed" in text
    assert "n/as" not in text
    assert "connect" in text.split("### Technical Issues", 1)[1]


@pytest.mark.parametrize("duration", [None, 0.2])
def test_one_request_and_a_sub_second_resources_run_still_render(duration):
    one = row(n_ok=1, n_requests=1, e2e_ci95_s=None, suites="basic,resources", duration_s=duration)
    meta = metadata()
    meta[0]["resources"] = {"n_samples": 0}
    text, html = render(pl.DataFrame([one]), meta, config())
    assert "**Avg CPU**: n/a" in text and "**Mean Latency**: 1.000s (no CI: one value)" in text
    assert "**P95 Latency**: n/a (a P95 needs 20 requests per trial)" in text
    assert "<figure" not in html and "Mean Latency" in html  # no chart


def test_log_carries_the_run_the_ideas_and_the_key_findings():
    rows = [
        row(),
        row(
            experiment_id="w4-r1", condition_id="w4", workers=4, suites="concurrency",
            req_per_s=1.0, e2e_mean_s=4.0, unaccounted_mean_s=3.0,
        ),
        row(
            experiment_id="w1-r1", condition_id="w1", workers=1, suites="concurrency",
            unaccounted_mean_s=0.0,
        ),
    ]  # fmt: skip
    text, _ = render(pl.DataFrame(rows), metadata(), config())
    assert "**Total Time**: 0.02 hours" in text
    assert "1. OLLAMA_NUM_PARALLEL: 2" in text
    # one slot's queue at 4 workers (3 s of 4) is what 1 − 1/4 leaves it: not a bottleneck
    assert "  - bottleneck: undetermined" in text
    assert "  - concurrency: inconclusive (too few trials, power not measurable)" in text
    assert "Every comparison rests on one pass" in text
    primary = "- **Primary bottleneck**: undetermined"
    assert (
        primary in text
        and "\n  - [ ] CPU\n  - [ ] Memory\n  - [ ] Disk I/O\n  - [ ] Network\n" in text
    )
    assert "GB free where results are written" in text


def test_log_shows_each_conditions_trial_spread():
    trials = [
        row(experiment_id=f"short-t0.7-w1-n4-r{k}", trial=k, repeats=2, e2e_mean_s=e2e)
        for k, e2e in ((1, 1.0), (2, 1.2))
    ]
    text, _ = render(pl.DataFrame(trials), metadata(), config())
    assert "Each condition ran as 2 independent trials" in text
    appendix = text.split("## Appendix", 1)[1]
    assert "| short-t0.7-w1-n4 | 2 | 8 | 0 | 1.100 ± 1.271 (2 trials: 1.000–1.200) |" in appendix


def test_every_basic_figure_carries_its_ci_and_one_pass_throughput_says_it_has_none():
    basic = row(tps_ci95=0.4, ttft_ci95_s=0.003)
    text, _ = render(pl.DataFrame([basic]), metadata(), config())
    assert "**Mean Latency**: 1.000s (95% CI ± 0.010)" in text
    assert "**Mean TPS**: 20.0 tok/s (95% CI ± 0.4) (decode; 16 output tokens" in text
    assert "**Mean TTFT**: 0.200s (95% CI ± 0.003)" in text
    assert "**Expected TPS**: ~10-20 tok/s" in text
    appendix = text.split("## Appendix", 1)[1]
    assert "| 1.00 (no CI: one value) |" in appendix  # req/s of one pass
    trials = [
        row(experiment_id=f"short-t0.7-w1-n4-r{k}", trial=k, repeats=2, tps_mean=tps)
        for k, tps in ((1, 20.0), (2, 22.0))
    ]
    text, _ = render(pl.DataFrame(trials), metadata(), config())
    assert "**Mean TPS**: 21.0 tok/s (95% CI ± 12.7 of 2 trial means, 20.0–22.0)" in text


def test_setup_times_come_from_the_setup_jobs_benchmark_files(tmp_path):
    import os

    from perflab.analyse.findings import runlog

    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    build = tmp_path / "model.build.tsv"
    build.write_text(
        header + "12.5000\t0:00:12\t310.20\t900.1\t300.0\t301.0\t0.00\t8.00\t95.00\t11.90\n"
    )
    os.utime(build, (1_700_000_000.0, 1_700_000_000.0))
    preflight = tmp_path / "preflight.tsv"
    preflight.write_text(header + "3.2500\t0:00:03\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n")
    os.utime(preflight, (1_700_000_010.0, 1_700_000_010.0))
    steps = runlog.setup_steps(
        {"preflight": preflight, "model_build": build, "missing": tmp_path / "none.tsv"}
    )
    assert [s.name for s in steps] == ["model_build", "preflight"]
    assert steps[0].started == 1_700_000_000.0 - 12.5 and steps[0].max_rss_mb == 310.2
    assert steps[1].max_rss_mb is None
    context = findings.context_from_metadata(read(metadata()), config(), "results/test", steps)
    found = findings.compute(pl.DataFrame([row()]), context, disk_path=".")
    assert found.run.setup_s == 15.75 and found.run.hands_on_s == 75.75
    text = report.render_template(
        "day1-log.md.j2", **report.build_context(found, read(metadata()), config(), {}, [])
    )
    setup = text.split("- [x] Setup & Installation", 1)[1].split("- [x] Basic", 1)[0]
    assert "[TIME]" not in setup
    assert "model build 12 s (peak memory 310 MB); pre-flight check" in setup
    assert "**Total Time**: 0.02 hours (1 min: setup 16 s + measurement 1 min" in text
    loaded = findings.load(_written(found, tmp_path))
    assert loaded.run.setup == found.run.setup


def _written(found, tmp_path):
    path = tmp_path / "findings.json"
    findings.write(found, path)
    return path


def test_blanks_for_the_person_stay_plain_brackets():
    text, _ = render(pl.DataFrame([row()]), metadata(), config())
    setup = text.split("- [x] Setup & Installation", 1)[1].split("- [x] Basic", 1)[0]
    assert "  - Started: [TIME]\n  - Completed: [TIME]" in setup  # no setup job was timed
    assert "\\[" not in text.split("## Time Tracking", 1)[1].split("### Study Time", 1)[0]
    assert report.markdown_escape("[TIME]") == "\\[TIME\\]"  # anything else stays escaped


def test_a_findings_file_without_the_newer_run_keys_still_renders(tmp_path):
    import json

    context = findings.context_from_metadata(read(metadata()), config(), "results/test")
    found = findings.compute(pl.DataFrame([row()]), context, disk_path=".")
    assert found.run.basic_span == (1_700_000_000.0, 1_700_000_060.0)
    path = _written(found, tmp_path)
    older = json.loads(path.read_text())
    for key in ("setup", "basic_span", "advanced_span"):
        del older["run"][key]
    path.write_text(json.dumps(older))
    loaded = findings.load(path)
    assert loaded.run.setup == () and loaded.run.basic_span == (None, None)
    text = report.render_template(
        "day1-log.md.j2", **report.build_context(loaded, read(metadata()), config(), {}, [])
    )
    assert "- [x] Basic Benchmarking (4h)\n  - Started: [TIME]" in text


def test_output_length_stands_next_to_every_speed():
    rows = [
        row(
            experiment_id=f"{name}-r1", condition_id=name, prompt_name=name,
            suites="prompt_length", prompt_tokens_mean=tokens, n_truncated=4,
        )
        for name, tokens in (("short", 5.0), ("long", 90.0))
    ] + [
        row(
            experiment_id=f"w{w}-r1", condition_id=f"w{w}", workers=w, suites="concurrency",
            output_tokens_mean=12.0,
        )
        for w in (1, 2)
    ]  # fmt: skip
    cfg = config() | {"prompts": {"short": "What is AI?", "long": "Describe it all."}}
    text, _ = render(pl.DataFrame(rows), metadata(), cfg)
    assert "TPS 20.0 tok/s (no CI: one value) over 16 output tokens (4 cut at max_tokens)" in text
    assert "- **2 workers**: 1.00 req/s (no CI: one value), 1.000 s" in text
    assert "n=4, 12 output tokens)" in text


def test_the_log_does_not_claim_a_commit_it_cannot_know_of():
    text, _ = render(pl.DataFrame([row()]), metadata(), config())
    assert "- [ ] Results JSON files committed (written, ready to commit:)" in text
    assert "  - `results/test/x.json`" in text


GGUF_NAME = "Smollm2 135M 8k Lc100K Mix1 Ep2"  # SmolLM2's own general.name


def test_the_model_goes_by_the_name_its_user_knows_with_the_ggufs_in_brackets():
    cfg = config(model="smollm2-135m")
    cfg["engine"] |= {"name": "llamacpp", "ignore_eos": None}
    text, _ = render(pl.DataFrame([row()]), metadata(engine="llamacpp", model=GGUF_NAME), cfg)
    label = f"SmolLM2-135M-Instruct (Q4_1) \\[GGUF general.name: {GGUF_NAME}\\]"
    assert f"model **{label}**" in text
    assert f"- **Model Tested**: {label} (llamacpp)" in text
    assert "- [x] SmolLM2-135M-Instruct (Q4_1) model ready" in text
    assert f"model        SmolLM2-135M-Instruct (Q4_1) [GGUF general.name: {GGUF_NAME}]" in text
    assert GGUF_NAME not in text.replace(f"general.name: {GGUF_NAME}", "")


def test_a_model_named_alike_by_config_and_engine_is_named_once():
    from perflab.models.names import model_label

    ollama = {"name": "ollama", "model": "llama3.1:8b", "model_path": None}
    assert model_label(ollama, "llama3.1:8b") == "llama3.1:8b"
    gguf = {"name": "llamacpp", "model": "smollm2-135m", "model_path": "/m/mine.gguf"}
    assert model_label(gguf, "Mine") == "mine.gguf"
    assert model_label(gguf, "Other") == "mine.gguf [GGUF general.name: Other]"
    quantized = {"name": "llamacpp", "model": "smollm2-135m", "model_path": None}
    assert model_label(quantized | {"quantization": "q8_0"}, None) == "SmolLM2-135M-Instruct (Q8_0)"
    server = {"name": "openai", "model": "smollm2-135m", "model_path": None}
    launched = server | {"launch": {"server": "llama-server"}}
    assert (
        model_label(launched, "x.gguf")
        == "SmolLM2-135M-Instruct (Q4_1) [the server's name: x.gguf]"
    )


def test_every_tokens_per_second_in_the_log_has_its_length_beside_it():
    rows = [
        row(prompt_tokens_mean=40.0),
        row(experiment_id="m-r1", condition_id="m", prompt_name="medium", prompt_tokens_mean=90.0),
        *[
            row(
                experiment_id=f"t{t}-r1", condition_id=f"t{t}", temperature=t,
                suites="temperature", output_tokens_mean=20.0 + t,
            )
            for t in (0.0, 1.5)
        ],
        row(
            experiment_id="res-r1", condition_id="res", suites="resources", duration_s=10.0,
            output_tps=18.0,
        ),
    ]  # fmt: skip
    cfg = config() | {"prompts": {"short": "What is AI?", "medium": "Explain it."}}
    cfg["suites"]["basic"]["prompts"] = ["short", "medium"]
    text, _ = render(pl.DataFrame(rows), metadata(), cfg)
    speeds = [line for line in text.splitlines() if "tok/s" in line]
    assert any("**Throughput**" in line for line in speeds)
    assert any("**Actual TPS**" in line for line in speeds)
    for line in speeds:
        if line.startswith(("- **Expected TPS**", "| condition", "| Threads")):
            continue  # an expectation, not a measurement; table headers
        assert "output tokens" in line or "prompt tokens" in line, line
    assert "(decode over 16 output tokens per request, n=8)" in text
    assert "(18.0 output tok/s, 16 output tokens per request)" in text
    assert "  - Measured decode speed is 20.0 tok/s over 16 output tokens per request (n=8)" in text


def test_the_peer_and_roofline_rates_carry_their_lengths():
    from perflab.analyse.findings.peer import PeerRate
    from perflab.analyse.findings.roofline import Efficiency
    from perflab.measure.peer import PeerTest

    peer_words = importlib.import_module("perflab.present.wording.peer")
    roofline_words = importlib.import_module("perflab.present.wording.roofline")

    test = PeerTest("tg", 64, 1, 5, 80.0, 2.0, 2.5)
    decode = PeerRate("decode", None, 30, 70.0, 1.0, test, 0.875, 0.85, 0.9, 42.0)
    assert "n=30 requests of 42 output tokens) against llama-bench" in peer_words._line(decode)
    rate = Efficiency("short", 57.4, None, None, 92.0, 23.0, 57.0, 32.0)
    assert "57.4 tok/s over 32 output tokens per request of a 92" in roofline_words.decode_line(
        rate
    )
    prefill = Efficiency("prefill", 102.0, None, None, 156.0, 46.0, 71.5, 143.0)
    assert "156 ± 46 tok/s ceiling at 143 prompt tokens" in roofline_words.prefill_line(prefill)


def test_the_disturbed_experiments_are_listed_once_and_counted_elsewhere():
    busy = {"interference_cpu_pct_mean": 150.0, "interference_threshold_pct": 112.0}
    rows = [
        row(**busy),
        *[
            row(
                experiment_id=f"w{w}-r1", condition_id=f"w{w}", workers=w, suites="concurrency",
                req_per_s=1.0, e2e_mean_s=float(w), unaccounted_mean_s=w - 1.0, **busy,
            )
            for w in (1, 4)
        ],
    ]  # fmt: skip
    text, _ = render(pl.DataFrame(rows), metadata(), config())
    start = text.index("### Technical Issues")
    section = text[start : text.index("### Conceptual Difficulties")]
    for experiment in ("short-t0.7-w1-n4-r1", "w1-r1", "w4-r1"):
        outside = text[:start] + text[start + len(section) :]
        assert experiment not in outside, experiment
        # its row with the figures, its own command, and the command for them all
        assert section.count(experiment) == 3, experiment
    assert (
        "3 of 3 experiments were disturbed by other work (above 112% of one core; each "
        "listed, with its figures, under Challenges Faced, Technical Issues)" in text
    )
    # each command one code span, in the table and below it: it cannot wrap at a hyphen
    assert "All the disturbed experiments at once: `snakemake --cores 1 --forcerun " in section
    assert section.count("| re-measure: `snakemake --cores 1 --forcerun ") == 3
    html = report.render_html(text, "log", {})
    assert html.count("<code>snakemake --cores 1 --forcerun ") == 4
    assert "- 3 of 3 experiments were disturbed by other work on the machine (each listed" in text
    assert "| 1 of 1 trials |" in text  # the appendix counts a condition's disturbed trials
