"""`perflab compare RUN_A RUN_B` on two constructed runs, and runs it must refuse."""

import json
from pathlib import Path

import polars as pl
import pytest

from perflab.cli import main
from perflab.present.compare import RunsNotComparable, compare_runs

CONDITIONS = {"short-t0.7-w1-n4": "What is AI?", "long-t0.7-w1-n4": "Describe a transformer."}


def make_run(
    results: Path,
    run: str,
    tps: float,
    trials: int = 2,
    max_tokens: int = 16,
    prompt_suffix: str = "",
    engine_version: str = "0.6.0",
    interference: float = 2.0,
) -> None:
    rows = []
    for trial in range(1, trials + 1):
        for index, (condition, prompt) in enumerate(CONDITIONS.items()):
            jitter = 1 + 0.01 * ((trial + index) % 3 - 1)
            experiment_id = f"{condition}-r{trial}"
            rows.append(
                {
                    "experiment_id": experiment_id,
                    "condition_id": condition,
                    "trial": trial,
                    "n_ok": 4,
                    "n_requests": 4,
                    "tps_mean": tps * jitter,
                    "ttft_mean_s": 0.05 / jitter,
                    "e2e_mean_s": 0.05 + max_tokens / tps,
                    "req_per_s": 1 / (0.05 + max_tokens / tps) * jitter,
                    "prompt_tokens_mean": 10.0,
                    "prefill_mean_s": 0.01 * jitter,
                    "output_tokens_mean": float(max_tokens),
                    "interference_cpu_pct_mean": interference,
                }
            )
            metadata = {
                "experiment": {
                    "id": experiment_id,
                    "condition_id": condition,
                    "prompt": prompt + prompt_suffix,
                },
                "options": {
                    "temperature": 0.7,
                    "max_tokens": max_tokens,
                    "seed": 42,
                    "ignore_eos": True,
                    "keep_alive": "5m",
                    "timeout_s": 120,
                },
                "engine": {
                    "engine": "ollama",
                    "engine_version": engine_version,
                    "model": "llama3.1:8b",
                    "model_digest": "abc",
                },
                "host": {
                    "hostname": "box",
                    "cpu_model": "cpu",
                    "logical_cores": 8,
                    "ollama_num_parallel": None,
                },
                "config_hash": f"hash-{engine_version}-{max_tokens}",
            }
            path = results / run / "experiments" / experiment_id / "metadata.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(metadata))
    pl.DataFrame(rows).write_parquet(results / run / "summary.parquet")


def verdicts(comparison, metric: str) -> set[str]:
    return {m.verdict.value for c in comparison.conditions for m in c.metrics if m.metric == metric}


def test_a_new_engine_version_1_5x_slower_is_called_slower_with_what_changed(tmp_path, capsys):
    make_run(tmp_path, "before", tps=30.0)
    make_run(tmp_path, "after", tps=20.0, engine_version="0.7.0")
    comparison = compare_runs("before", "after", tmp_path)
    assert verdicts(comparison, "tps") == {"slower"}
    assert verdicts(comparison, "ttft") == {"equivalent"}
    decode = next(m for m in comparison.conditions[0].metrics if m.metric == "tps")
    assert decode.test.estimate == pytest.approx(2 / 3, rel=0.02)
    assert decode.test.low < decode.test.estimate < decode.test.high
    assert decode.test.design.value == "welch" and decode.test.family > 1
    changed = {d.what: (d.a, d.b) for d in comparison.identity.changed}
    assert changed["engine version"] == ("ollama 0.6.0", "ollama 0.7.0")
    assert "model digest" not in changed and "host" not in changed
    out = tmp_path / "out"
    assert main(["compare", "before", "after", "--results", str(tmp_path), "--out", str(out)]) == 0
    assert "2 conditions compared" in capsys.readouterr().out
    markdown = (out / "compare.md").read_text()
    assert (
        "after is slower" in markdown and "engine version: ollama 0.6.0 → ollama 0.7.0" in markdown
    )
    data = json.loads((out / "compare.json").read_text())
    assert data["run_a"] == "before" and len(data["conditions"]) == 2
    assert (out / "compare.svg").read_text().startswith("<svg")


def test_runs_with_other_generation_settings_are_refused_unless_forced(tmp_path, capsys):
    make_run(tmp_path, "a", tps=30.0)
    make_run(tmp_path, "b", tps=30.0, max_tokens=64)
    with pytest.raises(RunsNotComparable) as refused:
        compare_runs("a", "b", tmp_path)
    message = str(refused.value)
    assert "generation max_tokens of long-t0.7-w1-n4: '16' in a, '64' in b" in message
    assert "config hash" in message and "--force" in message
    out = tmp_path / "out"
    argv = ["compare", "a", "b", "--results", str(tmp_path), "--out", str(out)]
    assert main(argv) == 2
    assert "max_tokens" in capsys.readouterr().err and not out.exists()
    assert main([*argv, "--force"]) == 0
    assert "Compared although the runs differ" in (out / "compare.md").read_text()


def test_runs_with_other_prompts_are_refused_naming_the_prompt(tmp_path):
    make_run(tmp_path, "a", tps=30.0)
    make_run(tmp_path, "b", tps=30.0, prompt_suffix=" Answer briefly.")
    with pytest.raises(
        RunsNotComparable, match="prompt of long-t0.7-w1-n4: 'Describe a transformer.'"
    ):
        compare_runs("a", "b", tmp_path)


def test_one_pass_or_disturbed_runs_give_inconclusive(tmp_path):
    make_run(tmp_path, "a", tps=30.0, trials=1)
    make_run(tmp_path, "b", tps=20.0, trials=1)
    assert verdicts(compare_runs("a", "b", tmp_path), "tps") == {"inconclusive"}
    make_run(tmp_path, "c", tps=30.0)
    make_run(tmp_path, "d", tps=20.0, interference=90.0)
    assert verdicts(compare_runs("c", "d", tmp_path), "tps") == {"inconclusive"}


def test_a_run_that_has_not_finished_is_named_with_the_fix(tmp_path, capsys):
    make_run(tmp_path, "a", tps=30.0)
    assert main(["compare", "a", "missing", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing/summary.parquet: no such file" in err and "Traceback" not in err
    assert main(["compare", "a", "../etc", "--results", str(tmp_path)]) == 2
    assert "'../etc' is not a run name" in capsys.readouterr().err


def test_the_snakemake_target_compares_two_finished_runs(tmp_path, copy_workflow):
    import subprocess
    import sys

    copy_workflow(tmp_path)
    make_run(tmp_path / "results", "before", tps=30.0)
    make_run(tmp_path / "results", "after", tps=20.0)
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "reports/compare/before--vs--after/compare.md"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    markdown = (tmp_path / "reports/compare/before--vs--after/compare.md").read_text()
    assert "after is slower" in markdown
