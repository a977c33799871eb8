"""The tiny model quantized with llama.cpp's quantizer: it builds, shrinks and loads."""

import pytest

from perflab.cli import main
from perflab.engines.base import GenerationOptions
from perflab.engines.llamacpp_engine import LlamaCppEngine
from perflab.models.quantize import QuantizeError, fits, quantize


@pytest.mark.parametrize("quantization", ["q8_0", "q4_0"])
def test_a_quantized_tiny_model_builds_smaller_and_generates(
    tiny_model_path, tmp_path, quantization
):
    out = quantize(tiny_model_path, tmp_path / f"{quantization}.gguf", quantization)
    assert 0 < out.stat().st_size < tiny_model_path.stat().st_size
    engine = LlamaCppEngine(out, n_ctx=256)
    try:
        info = engine.preflight()
        assert info["model_size_gb"] == pytest.approx(out.stat().st_size / 1e9)
        chunks = list(engine.stream("Hi", GenerationOptions(max_tokens=4, ignore_eos=True)))
        assert chunks[-1].timings.output_tokens == 4
    finally:
        engine.close()


def test_which_quantizations_fit_which_shapes():
    assert fits("q8_0", 32, 64).exact and fits("q4_0", 32, 64).exact
    assert not fits("q4_k", 32, 64).exact  # rows shorter than a 256-value k-quant block
    assert all(fits(q, 256, 768).exact for q in ("f16", "q8_0", "q4_0", "q4_k"))


def test_a_file_that_is_not_a_model_is_refused_without_a_traceback(tmp_path, capsys):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf")
    with pytest.raises(QuantizeError, match="could not quantize"):
        quantize(bad, tmp_path / "out.gguf", "q8_0")
    assert (
        main(
            [
                "quantize-model",
                "--in",
                str(bad),
                "--out",
                str(tmp_path / "o.gguf"),
                "--type",
                "q4_0",
            ]
        )
        == 2
    )
    assert "could not quantize" in capsys.readouterr().err
    assert not (tmp_path / "o.gguf").exists()


def test_the_fetched_smollm2_is_requantized_only_when_allowed(smollm2_path, tmp_path):
    with pytest.raises(QuantizeError, match="--allow-requantize"):
        quantize(smollm2_path, tmp_path / "refused.gguf", "q4_0")
    assert not (tmp_path / "refused.gguf").exists()
    out = quantize(smollm2_path, tmp_path / "q4_0.gguf", "q4_0", allow_requantize=True)
    assert 0 < out.stat().st_size < smollm2_path.stat().st_size
    engine = LlamaCppEngine(out, n_ctx=256, n_threads=1)
    try:
        assert engine.preflight()["model_details"]["file_type"] == "2"  # LLAMA_FTYPE_MOSTLY_Q4_0
        chunks = list(engine.stream("Hi", GenerationOptions(max_tokens=4, ignore_eos=True)))
        assert chunks[-1].timings.output_tokens == 4
    finally:
        engine.close()
