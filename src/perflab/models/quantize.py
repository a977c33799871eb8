"""Quantize a GGUF with llama.cpp's own quantizer (``llama_model_quantize``).

The tiny model is built at f16; q8_0, q4_0, q4_1 and q4_k (llama.cpp's Q4_K_M
mix) are made from it exactly as ``llama-quantize`` would. SmolLM2 comes as
Q4_1; its other quantizations are made from that file with
``allow_requantize`` (``llama-quantize --allow-requantize``): the weights keep
what Q4_1 kept, so such files compare speed and size, not what a quantization
from the original weights would cost in quality. Block formats need a
row length that is a multiple of their block: 32 values for q8_0 and q4_0,
256 for the k-quants. llama.cpp stores a tensor whose rows do not fit in a
fallback type instead (q4_k falls back to q5_0 or q8_0), so a tiny model
narrower than 256 is only partly q4_k; ``fits`` says so before building.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

QUANTIZATIONS = ("f16", "q8_0", "q4_0", "q4_1", "q4_k")
BLOCK_SIZE = {"f16": 1, "q8_0": 32, "q4_0": 32, "q4_1": 32, "q4_k": 256}
FTYPE_NAMES = {
    "f16": "LLAMA_FTYPE_MOSTLY_F16",
    "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
    "q4_0": "LLAMA_FTYPE_MOSTLY_Q4_0",
    "q4_1": "LLAMA_FTYPE_MOSTLY_Q4_1",
    "q4_k": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
}


class QuantizeError(RuntimeError):
    """llama.cpp could not quantize the model; the message names the files."""


@dataclass(frozen=True)
class Fit:
    """Whether every weight matrix of a model with these widths takes ``quantization``."""

    quantization: str
    block: int
    widths: tuple[int, ...]

    @property
    def exact(self) -> bool:
        return all(width % self.block == 0 for width in self.widths)


def fits(quantization: str, embedding_length: int, feed_forward_length: int) -> Fit:
    """Rows of the tiny model's matrices are embedding_length or feed_forward_length long."""
    return Fit(quantization, BLOCK_SIZE[quantization], (embedding_length, feed_forward_length))


def quantize(
    source: Path, dest: Path, quantization: str, threads: int = 0, allow_requantize: bool = False
) -> Path:
    """Write ``source`` quantized to ``dest`` (atomically); QuantizeError if llama.cpp fails.
    ``allow_requantize``: ``source`` may itself be quantized (llama.cpp refuses it otherwise)."""
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    if quantization not in FTYPE_NAMES:
        raise QuantizeError(
            f"unknown quantization {quantization!r}; use one of {', '.join(QUANTIZATIONS)}"
        )
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, FTYPE_NAMES[quantization])
    params.nthread = threads
    params.allow_requantize = allow_requantize
    with suppress_stdout_stderr(disable=False):
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if status != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise QuantizeError(
            f"llama.cpp could not quantize {source} to {quantization} (status {status}); "
            "check that the file is a GGUF model"
            + (
                ""
                if allow_requantize
                else " at f16 or f32 (a quantized one needs --allow-requantize)"
            )
        )
    os.replace(tmp, dest)
    return dest
