"""The perflab command line."""

import subprocess
import sys

from conftest import ROOT

from perflab.cli import main


def test_validate_lists_the_experiments(capsys):
    assert (
        main(
            [
                "validate",
                str(ROOT / "config" / "config.yaml"),
                str(ROOT / "config" / "calibration.yaml"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "valid, 45 experiments (3 trials each)" in out
    assert "medium-t0-w4-n8-r3  (concurrency)" in out
    assert "long-t0.7-w1-n4-reuse-r1  (kv_cache)" in out


def test_a_bad_config_exits_2_naming_key_and_file(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("generation:\n  max_tokens: 0\n")
    assert main(["validate", str(ROOT / "config" / "config.yaml"), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "generation.max_tokens: 0 is less than the minimum of 1" in err and "bad.yaml" in err


def test_calibrate_passes_its_flags_to_the_server():
    result = subprocess.run(
        [sys.executable, "-m", "perflab", "calibrate", "--port", "0", "--itl", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2 and "itl_s must be >= 0" in result.stderr
