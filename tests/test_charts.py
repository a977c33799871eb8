"""Each chart's spec, and that saving gives SVG, PNG and offline HTML."""

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
    return pl.DataFrame(rows)


def find(spec, key):
    """Every value of ``key`` anywhere in a spec (layers carry their own)."""
    if isinstance(spec, dict):
        found = [spec[key]] if key in spec else []
        return found + [v for value in spec.values() for v in find(value, key)]
    if isinstance(spec, list):
        return [v for value in spec for v in find(value, key)]
    return []


def layer_marks(spec):
    return [
        layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
        for layer in spec["layer"]
    ]


def test_prompt_length_chart_has_points_and_a_fit(summary):
    spec = charts.prompt_length_chart(summary).to_dict()
    assert layer_marks(spec) == ["point", "line"]
    assert spec["layer"][1]["transform"][0]["regression"] == "seconds"
    x = find(spec, "x")[0]
    assert x["field"] == "prompt_tokens_mean" and x["type"] == "quantitative"
    assert any("5 prompt lengths" in str(title) for title in find(spec, "title"))


def test_temperature_chart_has_error_bars_and_output_length(summary):
    spec = charts.temperature_chart(summary).to_dict()
    assert layer_marks(spec) == ["bar", "rule", "text"]
    assert spec["layer"][2]["encoding"]["text"]["field"] == "output_tokens_mean"


def test_concurrency_chart_plots_throughput_against_latency(summary):
    spec = charts.concurrency_chart(summary).to_dict()
    assert find(spec, "x")[0]["field"] == "e2e_mean_s"
    assert find(spec, "y")[0]["field"] == "req_per_s"


def test_breakdown_chart_stacks_the_engine_phases(summary):
    spec = charts.latency_breakdown_chart(summary).to_dict()
    assert spec["mark"]["type"] == "bar" and spec["encoding"]["y"]["stack"] == "zero"
    phases = {row["phase"] for row in next(iter(spec["datasets"].values()))}
    assert phases == {"queue", "load", "prefill", "decode", "other"}


def test_latency_distribution_uses_measured_ok_requests_only():
    requests = pl.DataFrame(
        {
            "prompt_name": ["short"] * 4,
            "suites": ["basic"] * 4,
            "e2e_s": [0.1, 0.2, 0.3, 9.0],
            "is_warmup": [False, False, False, True],
            "status": ["ok", "ok", "error", "ok"],
        }
    )
    spec = charts.latency_distribution_chart(requests).to_dict()
    assert layer_marks(spec) == ["boxplot", "circle"]
    assert any("n=2 requests" in str(title) for title in find(spec, "title"))


def test_empty_input_gives_a_no_data_chart():
    spec = charts.resource_timeline_chart(pl.DataFrame()).to_dict()
    assert spec["mark"]["type"] == "text"


def test_save_chart_writes_svg_png_and_offline_html(summary, tmp_path):
    paths = charts.save_chart(charts.concurrency_chart(summary), tmp_path / "concurrency")
    assert paths["svg"].read_text().startswith("<svg")
    assert paths["png"].read_bytes()[:4] == b"\x89PNG"
    html = paths["html"].read_text()
    assert "vega" in html and '<script src="http' not in html and "cdn.jsdelivr" not in html
