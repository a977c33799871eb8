"""The KV cache in numbers: the formula's bytes per token beside the slope of the
server's peak RSS against prompt length, on constructed experiment summaries."""

import polars as pl
import pytest
from test_report import config, metadata, read

from perflab.analyse import findings
from perflab.analyse.findings.kv_memory import KvMemoryVerdict, summary
from perflab.analyse.findings.resources import ExperimentResources
from perflab.measure.resource_summary import ResourceSummary
from perflab.present import report
from perflab.present.wording import kv_memory

FORMULA = 2 * 30 * 3 * 64 * 2  # SmolLM2-135M in f16: 23,040 bytes per token
TOKENS = [100, 400, 800, 1600]
NOISE = [3000.0, -2000.0, 1000.0, -2500.0, -1500.0, 2500.0, -3000.0, 2000.0]  # bytes


def experiments(per_token: float, trials: int = 2):
    """Two trials of four prompt lengths; peak RSS = 0.5 GB + per_token × tokens + noise."""
    rows, resources = [], {}
    for trial in range(1, trials + 1):
        for i, tokens in enumerate(TOKENS):
            experiment_id = f"p{tokens}-r{trial}"
            rows.append(
                {
                    "experiment_id": experiment_id,
                    "condition_id": f"p{tokens}",
                    "trial": trial,
                    "suites": "prompt_length",
                    "prompt_tokens_mean": float(tokens),
                }
            )
            rss = 0.5e9 + per_token * tokens + NOISE[(trial - 1) * len(TOKENS) + i]
            resources[experiment_id] = ExperimentResources(
                ResourceSummary(server_rss_gb_max=rss / 1e9)
            )
    return pl.DataFrame(rows), resources


def test_rss_that_grows_by_the_formula_is_measured_with_its_ci_and_n():
    frame, resources = experiments(FORMULA)
    found = summary(frame, resources, FORMULA, "f16")
    assert found.verdict is KvMemoryVerdict.GROWS
    assert found.fit.n == 8  # experiments, not requests
    assert found.fit.slope == pytest.approx(FORMULA, rel=0.01)
    assert found.fit.slope_low < FORMULA < found.fit.slope_high
    assert found.share_of_formula == pytest.approx(1.0, abs=0.01)
    line = kv_memory(found)
    assert line.startswith("The formula (2 × layers × KV heads × head dim × f16 bytes) gives ")
    assert "22.5 KiB (23,040 B) per token" in line and "n=8 experiments" in line
    assert "100–1,600 prompt tokens" in line
    assert "at 100% of the formula's rate: the cache fills as it is used" in line


def test_rss_that_grows_faster_than_the_formula_is_said_to_count_more_than_the_cache():
    frame, resources = experiments(2 * FORMULA)
    line = kv_memory(summary(frame, resources, FORMULA, "f16"))
    assert "at 200% of the formula's rate: peak RSS counts more than the cache" in line
    frame, resources = experiments(FORMULA / 4)
    line = kv_memory(summary(frame, resources, FORMULA, "f16"))
    assert "at only 25% of the formula's rate: part of the cache was reserved up front" in line


def test_rss_that_stays_flat_says_the_cache_was_allocated_up_front():
    frame, resources = experiments(0.0)
    found = summary(frame, resources, FORMULA, "f16")
    assert found.verdict is KvMemoryVerdict.UP_FRONT
    assert abs(found.fit.slope) < 10 and found.fit.slope_high < FORMULA / 2
    line = kv_memory(found)
    assert "RSS cannot show the cache: the engine allocated it up front" in line
    assert "n_ctx × 22.5 KiB" in line


def test_without_the_formula_flat_rss_is_not_called_up_front():
    frame, resources = experiments(0.0)
    found = summary(frame, resources)
    assert found.verdict is KvMemoryVerdict.INCONCLUSIVE and found.formula_bytes_per_token is None
    line = kv_memory(found)
    assert line.startswith("The server's peak RSS changes by") and "formula" not in line
    assert "Too noisy to tell growth from none" in line


def test_too_few_experiments_or_no_rss_gives_no_figure():
    frame, resources = experiments(FORMULA, trials=1)
    assert summary(frame.head(2), resources, FORMULA) is None
    assert summary(frame, {}, FORMULA) is None  # a remote server: no RSS here
    assert kv_memory(None) is None


def test_the_deep_dive_puts_the_measured_slope_in_the_log(tmp_path):
    frame, resources = experiments(0.0)
    meta, cfg = read(metadata()), config()
    context = findings.context_from_metadata(meta, cfg, str(tmp_path))
    found = findings.compute(frame, context, resources_by_id=resources, disk_path=str(tmp_path))
    assert found.kv_memory is not None and found.kv_memory.fit.n == 8
    text = report.render_template(
        "day1-log.md.j2", **report.build_context(found, meta, cfg, {}, [])
    )
    dive = text.split("- [ ] KV-Cache Deep Dive", 1)[1].split("- [ ] Inference Optimization")[0]
    assert "  - KV cache in memory: The server's peak RSS changes by" in dive
    written = tmp_path / "findings.json"
    findings.write(found, written)
    assert findings.load(written).kv_memory == found.kv_memory
