"""Each chart's spec, empty input, and that saving gives SVG, PNG and offline HTML."""

import polars as pl
import pytest

from perflab.analyse import findings
from perflab.present import chart_style, charts, resource_chart


@pytest.fixture
def summary():
    rows = []
    for name, tokens in (
        ("tiny", 2),
        ("short", 5),
        ("medium", 25),
        ("long", 90),
        ("very_long", 400),
    ):
        rows.append(
            {
                "experiment_id": f"{name}-t0.7-w1-n5",
                "prompt_name": name,
                "temperature": 0.7,
                "workers": 1,
                "suites": "basic,prompt_length"
                if name in ("short", "medium", "long")
                else "prompt_length",
                "prompt_tokens_mean": float(tokens),
                "ttft_mean_s": 0.01 + tokens / 1e4,
                "e2e_mean_s": 0.2 + tokens / 1e4,
                "e2e_ci95_s": 0.01,
                "n_ok": 5,
                "tps_mean": 300.0,
                "output_tokens_mean": 64.0,
                "req_per_s": 4.0,
                "queue_mean_s": 0.0,
                "load_mean_s": 0.0,
                "prefill_mean_s": 0.005,
                "decode_mean_s": 0.19,
            }
        )
    for temperature in (0.0, 1.5):
        rows.append(
            rows[2]
            | {
                "experiment_id": f"t{temperature}",
                "temperature": temperature,
                "suites": "temperature",
            }
        )
    for workers in (2, 4):
        rows.append(
            rows[2]
            | {
                "experiment_id": f"w{workers}",
                "workers": workers,
                "suites": "concurrency",
                "e2e_mean_s": 0.2 * workers,
            }
        )
    rows[2]["suites"] = "basic,prompt_length,temperature,concurrency"
    return pl.DataFrame(rows)


@pytest.fixture
def found(summary):
    context = findings.Context(engine="ollama", prompt_order=("short", "medium", "long"))
    return findings.compute(summary, context)


@pytest.fixture
def nothing():
    return findings.compute(pl.DataFrame(), findings.Context(engine="ollama"))


@pytest.fixture
def requests():
    return pl.DataFrame(
        {
            "prompt_name": ["long", "long", "short", "short", "short", "short", "medium"],
            "prompt_tokens": [90, 90, 5, 5, 5, 5, 25],
            "suites": ["basic"] * 6 + ["temperature"],
            "e2e_s": [0.5, 0.6, 0.1, 0.2, 0.3, 9.0, 0.4],
            "is_warmup": [False, False, False, False, False, True, False],
            "status": ["ok", "ok", "ok", "ok", "error", "ok", "ok"],
        }
    )


@pytest.fixture
def samples():
    return pl.DataFrame(
        {
            "t": [100.0, 100.5, 101.0],
            "cpu_percent": [50.0, 60.0, 55.0],
            "server_cpu_percent": [95.0, 99.0, None],
            "client_cpu_percent": [None, None, None],
            "mem_used_gb": [1.0, 1.1, 1.2],
            "server_rss_gb": [0.5, 0.5, 0.6],
        }
    )


def find(spec, key):
    """Every value of ``key`` anywhere in a spec (layers carry their own)."""
    if isinstance(spec, dict):
        found = [spec[key]] if key in spec else []
        return found + [v for value in spec.values() for v in find(value, key)]
    if isinstance(spec, list):
        return [v for value in spec for v in find(value, key)]
    return []


def mark(spec):
    return spec["mark"]["type"] if isinstance(spec["mark"], dict) else spec["mark"]


def layer_marks(spec):
    return [mark(layer) for layer in spec["layer"]]


def encodings(spec):
    """(channel, field, type) of every encoding in the spec."""
    return {
        (channel, value.get("field"), value.get("type"))
        for encoding in find(spec, "encoding")
        for channel, value in encoding.items()
        if isinstance(value, dict) and "field" in value
    }


def dataset(spec):
    (values,) = spec["datasets"].values()
    return values


def titles(spec):
    return " ".join(str(title) for title in find(spec, "title"))


def test_latency_distribution_uses_measured_ok_basic_requests_only(requests):
    quantiles = charts.latency_quantiles(requests.lazy())
    spec = charts.latency_distribution_chart(quantiles).to_dict()
    assert layer_marks(spec) == ["rule", "bar", "tick"]
    rows = {row["prompt_name"]: row for row in dataset(spec)}
    assert set(rows) == {"short", "long"}  # medium is not in the basic suite
    assert rows["short"]["n"] == 2  # the failed and the warm-up request are left out
    assert (rows["short"]["min"], rows["short"]["max"]) == (0.1, 0.2)
    assert rows["long"]["median"] == pytest.approx(0.55)
    assert spec["layer"][0]["encoding"]["x"]["sort"] == ["short", "long"]
    assert "n=4 requests over 2 prompts" in titles(spec)


def test_latency_distribution_renders_a_million_requests():
    n = 1_000_000
    requests = pl.LazyFrame(
        {
            "prompt_name": pl.Series(["short", "long"] * (n // 2)),
            "prompt_tokens": pl.Series([5, 90] * (n // 2)),
            "suites": pl.Series(["basic"] * n),
            "e2e_s": pl.Series([(i % 1000) / 1000 for i in range(n)]),
            "is_warmup": pl.Series([False] * n),
            "status": pl.Series(["ok"] * n),
        }
    )
    chart = charts.latency_distribution_chart(charts.latency_quantiles(requests))
    spec = chart.to_dict()  # Altair refuses more than 5,000 rows: pre-aggregated, 2 rows
    assert len(dataset(spec)) == 2 and "n=1000000 requests" in titles(spec)


def test_prompt_length_chart_has_points_and_the_findings_lines(found):
    spec = charts.prompt_length_chart(found.prompt_length).to_dict()
    assert layer_marks(spec) == ["point", "line"]
    points = spec["datasets"][spec["layer"][0]["data"]["name"]]
    assert len(points) == 10 and {row["metric"] for row in points} == {"mean TTFT", "mean latency"}
    lines = spec["datasets"][spec["layer"][1]["data"]["name"]]
    ttft = [row for row in lines if row["metric"] == "mean TTFT"]
    assert [row["tokens"] for row in ttft] == [2.0, 400.0]
    assert ttft[1]["seconds"] == pytest.approx(0.01 + 400 / 1e4)
    assert "5 prompt lengths" in titles(spec)


def test_temperature_chart_has_error_bars_and_output_length(found):
    spec = charts.temperature_chart(found.temperature).to_dict()
    assert layer_marks(spec) == ["point", "errorbar", "text"]
    rows = dataset(spec)
    assert [row["temperature"] for row in rows] == [0.0, 0.7, 1.5]
    assert rows[0]["low"] == pytest.approx(0.2025 - 0.01)
    assert rows[0]["label"] == "64 tok"
    assert "3 temperatures" in titles(spec)


def test_concurrency_chart_plots_throughput_against_latency(found):
    spec = charts.concurrency_chart(found.concurrency).to_dict()
    assert layer_marks(spec) == ["line", "text"]
    assert {
        ("x", "e2e_mean_s", "quantitative"),
        ("y", "req_per_s", "quantitative"),
        ("order", "workers", "ordinal"),
    } <= encodings(spec)
    assert [row["label"] for row in dataset(spec)] == ["1 worker", "2 workers", "4 workers"]
    assert "req/s" in titles(spec) and "3 worker counts" in titles(spec)


def test_resource_timeline_has_cpu_and_memory_panels(samples):
    spec = resource_chart.resource_timeline_chart(samples).to_dict()
    assert [mark(panel) for panel in spec["vconcat"]] == ["line", "line"]
    assert ("x", "elapsed_s", "quantitative") in encodings(spec)
    series = {row["series"] for row in find(spec, "datasets")[0].values() for row in row}
    assert series == {
        "system CPU (% of all cores)",
        "server CPU (% of one core)",
        "system memory used",
        "server RSS",
    }
    assert "3 samples over 1 s" in titles(spec) and "GB" in titles(spec)


def test_resource_timeline_without_memory_has_one_panel(samples):
    spec = resource_chart.resource_timeline_chart(samples.select("t", "cpu_percent")).to_dict()
    assert len(spec["vconcat"]) == 1


def test_resource_timeline_is_downsampled_in_time():
    samples = pl.DataFrame({"t": [float(i) for i in range(5000)], "cpu_percent": [50.0] * 5000})
    binned = resource_chart.downsample(samples, points=100)
    assert binned.height <= 101 and binned["cpu_percent"].mean() == 50.0
    assert resource_chart.downsample(samples.head(10)).height == 10


def test_breakdown_chart_stacks_the_engine_phases(found):
    spec = charts.latency_breakdown_chart(found.basic).to_dict()
    assert mark(spec) == "bar" and spec["encoding"]["y"]["stack"] == "zero"
    assert {("y", "seconds", "quantitative"), ("color", "phase", "nominal")} <= encodings(spec)
    rows = dataset(spec)
    assert {row["phase"] for row in rows} == {"queue", "load", "prefill", "decode", "other"}
    assert [p.prompt_name for p in found.basic.prompts] == ["short", "medium", "long"]
    medium = {row["phase"]: row["seconds"] for row in rows if "medium" in row["prompt"]}
    assert sum(medium.values()) == pytest.approx(0.2025)
    assert medium["other"] == pytest.approx(0.2025 - 0.195)


def test_breakdown_chart_without_engine_timings_splits_at_the_first_token(summary):
    frame = summary.drop("queue_mean_s", "load_mean_s", "prefill_mean_s", "decode_mean_s")
    basic = findings.compute(frame, findings.Context(engine="ollama")).basic
    spec = charts.latency_breakdown_chart(basic).to_dict()
    assert {row["phase"] for row in dataset(spec)} == {"time to first token", "after first token"}


def test_empty_input_gives_a_no_data_chart(nothing, samples):
    for chart in (
        charts.latency_distribution_chart(charts.latency_quantiles(pl.LazyFrame())),
        charts.prompt_length_chart(nothing.prompt_length),
        charts.temperature_chart(nothing.temperature),
        charts.concurrency_chart(nothing.concurrency),
        resource_chart.resource_timeline_chart(samples.clear()),
        resource_chart.resource_timeline_chart(pl.DataFrame()),
        charts.latency_breakdown_chart(nothing.basic),
    ):
        spec = chart.to_dict()
        assert mark(spec) == "text"
        assert dataset(spec) == [{"text": "no data in this run"}]


def test_save_chart_writes_svg_png_and_offline_html(found, tmp_path):
    chart = charts.concurrency_chart(found.concurrency)
    paths = chart_style.save_chart(chart, tmp_path / "out" / "concurrency")
    assert set(paths) == {"svg", "png", "html"}
    assert paths["svg"].read_text().startswith("<svg")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    html = paths["html"].read_text()
    assert "vega" in html and "<script src=" not in html and "cdn.jsdelivr" not in html
    assert not chart_style.EXTERNAL_SCRIPT.search(html)
    assert all(path.stat().st_size > 0 for path in paths.values())


def test_save_chart_keeps_dots_in_the_stem(nothing, tmp_path):
    paths = chart_style.save_chart(
        charts.temperature_chart(nothing.temperature), tmp_path / "run.v2"
    )
    assert paths["svg"].name == "run.v2.svg" and paths["html"].exists()


def test_external_script_pattern():
    assert chart_style.EXTERNAL_SCRIPT.search('<script src="https://cdn.example/vega.js"></script>')
    assert chart_style.EXTERNAL_SCRIPT.search("<script type='text/javascript' src='//cdn/x.js'>")
    assert not chart_style.EXTERNAL_SCRIPT.search('<script type="text/javascript">var a;</script>')


def test_saved_html_keeps_data_text_out_of_its_script_element(tmp_path):
    hostile = pl.DataFrame({"name": ["</script><script>alert(1)</script>"], "value": [1.0]})
    chart = charts.alt.Chart(hostile).mark_bar().encode(x="name:N", y="value:Q")
    html = chart_style.save_chart(chart, tmp_path / "hostile")["html"].read_text()
    assert "<script>alert" not in html and html.count("<script") == html.count("</script")
    assert "\u2039/script\u203a" in html or "\\u2039/script\\u203a" in html  # as text or JSON


def test_concurrency_chart_marks_an_untrusted_knee():
    from perflab.analyse import findings

    data = pl.DataFrame(
        [
            {
                "experiment_id": f"w{w}-r{k}", "condition_id": f"w{w}", "suites": "concurrency",
                "trial": k, "workers": w, "n_requests": 20, "n_ok": 20, "n_errors": 0,
                "req_per_s": rate, "e2e_mean_s": 1.0, "interference_cpu_pct_mean": load,
            }
            for w, rate, load in ((1, 1.0, 2.0), (2, 1.9, 150.0), (4, 1.95, 2.0))
            for k in (1, 2)
        ]
    )  # fmt: skip
    result = findings.compute(data, findings.Context(engine="ollama"))
    assert not result.concurrency.trusted
    spec = charts.concurrency_chart(result.concurrency).to_dict()
    assert "knee at 2 (inconclusive: other work disturbed the run)" in titles(spec)
