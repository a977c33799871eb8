"""Each chart's spec, empty input, and that saving gives SVG, PNG and offline HTML."""

import polars as pl
import pytest

from perflab import charts


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
    spec = charts.latency_distribution_chart(requests).to_dict()
    assert layer_marks(spec) == ["boxplot", "circle"]
    assert {("x", "prompt_name", "nominal"), ("y", "e2e_s", "quantitative")} <= encodings(spec)
    assert ("xOffset", "jitter", "quantitative") in encodings(spec)
    assert sorted(row["e2e_s"] for row in dataset(spec)) == [0.1, 0.2, 0.5, 0.6]
    assert "n=4 requests over 2 prompts" in titles(spec)
    # prompts from shortest to longest, by their prompt tokens
    assert find(spec, "x")[0]["sort"] == ["short", "long"]


def test_latency_distribution_jitter_is_deterministic(requests):
    first = charts.latency_distribution_chart(requests).to_dict()
    assert dataset(first) == dataset(charts.latency_distribution_chart(requests).to_dict())


def test_prompt_length_chart_has_points_and_a_fit(summary):
    spec = charts.prompt_length_chart(summary).to_dict()
    assert layer_marks(spec) == ["point", "line"]
    regression = spec["layer"][1]["transform"][0]
    assert regression["regression"] == "seconds" and regression["on"] == "prompt_tokens_mean"
    assert regression["groupby"] == ["metric"]
    assert {
        ("x", "prompt_tokens_mean", "quantitative"),
        ("y", "seconds", "quantitative"),
        ("color", "metric", "nominal"),
    } <= encodings(spec)
    assert {row["metric"] for row in dataset(spec)} == {"mean TTFT", "mean latency"}
    assert "5 prompt lengths" in titles(spec) and "(s)" in titles(spec)


def test_temperature_chart_has_error_bars_and_output_length(summary):
    spec = charts.temperature_chart(summary).to_dict()
    assert layer_marks(spec) == ["point", "errorbar", "text"]
    assert {
        ("x", "temperature", "ordinal"),
        ("y", "e2e_mean_s", "quantitative"),
        ("y", "low", "quantitative"),
        ("y2", "high", None),
        ("text", "label", "nominal"),
    } <= {(c, f, t) for c, f, t in encodings(spec)}
    rows = sorted(dataset(spec), key=lambda row: row["temperature"])
    assert [row["temperature"] for row in rows] == [0.0, 0.7, 1.5]
    assert rows[0]["low"] == pytest.approx(0.1925) and rows[0]["high"] == pytest.approx(0.2125)
    assert rows[0]["label"] == "64 tok"
    assert "3 temperatures, n=15" in titles(spec)


def test_concurrency_chart_plots_throughput_against_latency(summary):
    spec = charts.concurrency_chart(summary).to_dict()
    assert layer_marks(spec) == ["line", "text"]
    assert {
        ("x", "e2e_mean_s", "quantitative"),
        ("y", "req_per_s", "quantitative"),
        ("text", "label", "nominal"),
        ("order", "workers", "ordinal"),
    } <= encodings(spec)
    assert [row["label"] for row in dataset(spec)] == ["1 worker", "2 workers", "4 workers"]
    assert "req/s" in titles(spec) and "3 worker counts" in titles(spec)


def test_resource_timeline_has_cpu_and_memory_panels(samples):
    spec = charts.resource_timeline_chart(samples).to_dict()
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
    spec = charts.resource_timeline_chart(samples.select("t", "cpu_percent")).to_dict()
    assert len(spec["vconcat"]) == 1


def test_breakdown_chart_stacks_the_engine_phases(summary):
    spec = charts.latency_breakdown_chart(summary).to_dict()
    assert mark(spec) == "bar" and spec["encoding"]["y"]["stack"] == "zero"
    assert {
        ("x", "prompt_name", "nominal"),
        ("y", "seconds", "quantitative"),
        ("color", "phase", "nominal"),
    } <= encodings(spec)
    rows = dataset(spec)
    assert {row["phase"] for row in rows} == {"queue", "load", "prefill", "decode", "other"}
    assert spec["encoding"]["x"]["sort"] == ["short", "medium", "long"]
    medium = {row["phase"]: row["seconds"] for row in rows if row["prompt_name"] == "medium"}
    assert sum(medium.values()) == pytest.approx(0.2025)
    assert medium["other"] == pytest.approx(0.2025 - 0.195)


def test_breakdown_chart_without_engine_timings_splits_at_the_first_token(summary):
    frame = summary.drop("queue_mean_s", "load_mean_s", "prefill_mean_s", "decode_mean_s")
    spec = charts.latency_breakdown_chart(frame).to_dict()
    assert {row["phase"] for row in dataset(spec)} == {"time to first token", "after first token"}


CHARTS = [
    charts.latency_distribution_chart,
    charts.prompt_length_chart,
    charts.temperature_chart,
    charts.concurrency_chart,
    charts.resource_timeline_chart,
    charts.latency_breakdown_chart,
]


@pytest.mark.parametrize("chart", CHARTS, ids=lambda f: f.__name__)
def test_empty_input_gives_a_no_data_chart(chart, summary, requests, samples):
    for frame in (pl.DataFrame(), summary.clear(), requests.clear(), samples.clear()):
        spec = chart(frame).to_dict()
        assert mark(spec) == "text"
        assert dataset(spec) == [{"text": "no data in this run"}]


def test_save_chart_writes_svg_png_and_offline_html(summary, tmp_path):
    paths = charts.save_chart(charts.concurrency_chart(summary), tmp_path / "out" / "concurrency")
    assert set(paths) == {"svg", "png", "html"}
    assert paths["svg"].read_text().startswith("<svg")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    html = paths["html"].read_text()
    assert "vega" in html and "<script src=" not in html and "cdn.jsdelivr" not in html
    assert not charts.EXTERNAL_SCRIPT.search(html)
    assert all(path.stat().st_size > 0 for path in paths.values())


def test_save_chart_keeps_dots_in_the_stem(tmp_path):
    paths = charts.save_chart(charts.temperature_chart(pl.DataFrame()), tmp_path / "run.v2")
    assert paths["svg"].name == "run.v2.svg" and paths["html"].exists()


def test_external_script_pattern():
    assert charts.EXTERNAL_SCRIPT.search('<script src="https://cdn.example/vega.js"></script>')
    assert charts.EXTERNAL_SCRIPT.search("<script type='text/javascript' src='//cdn/x.js'>")
    assert not charts.EXTERNAL_SCRIPT.search('<script type="text/javascript">var a;</script>')
