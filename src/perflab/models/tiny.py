"""Build a tiny random-weight Llama-3-architecture GGUF from the Llama-3 vocab.

The weights are random, so the text it writes is meaningless; the work
llama.cpp does per token (tokenize, prefill, decode through the same kernels)
is real, which is what the timings measure.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perflab.models.llama_build import fetch_sdist, sdist_name

VOCAB_MEMBER = "vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf"
TOKENIZER_KEYS = (
    "tokenizer.ggml.model",
    "tokenizer.ggml.pre",
    "tokenizer.ggml.tokens",
    "tokenizer.ggml.token_type",
    "tokenizer.ggml.merges",
    "tokenizer.ggml.bos_token_id",
    "tokenizer.ggml.eos_token_id",
)


@dataclass(frozen=True)
class TinyModelSpec:
    embedding_length: int = 256
    block_count: int = 4
    feed_forward_length: int = 768
    head_count: int = 4
    head_count_kv: int = 2
    context_length: int = 4096
    seed: int = 0

    def __post_init__(self):
        if self.embedding_length % self.head_count:
            raise ValueError(
                f"tiny_model.embedding_length ({self.embedding_length}) must be a multiple "
                f"of tiny_model.head_count ({self.head_count})"
            )
        if self.head_count % self.head_count_kv:
            raise ValueError(
                f"tiny_model.head_count ({self.head_count}) must be a multiple "
                f"of tiny_model.head_count_kv ({self.head_count_kv})"
            )


def fetch_vocab(dest: Path, version: str | None = None) -> Path:
    """Download the llama-cpp-python sdist with pip and extract the vocab GGUF."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        sdist = fetch_sdist(Path(tmp) / sdist_name(version), version)
        extract_vocab(sdist, dest)
    return dest


def extract_vocab(sdist: Path, dest: Path) -> Path:
    with tarfile.open(sdist) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith(VOCAB_MEMBER))
        source = tar.extractfile(member)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(".tmp")
        tmp.write_bytes(source.read())
        os.replace(tmp, dest)
    return dest


def _tokenizer_fields(vocab_path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(vocab_path))
    return {key: reader.fields[key].contents() for key in TOKENIZER_KEYS}


def _weights(spec: TinyModelSpec, vocab_size: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(spec.seed)
    dim, ff = spec.embedding_length, spec.feed_forward_length
    kv_dim = dim // spec.head_count * spec.head_count_kv

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * 0.02).astype(np.float16)

    tensors = {
        "token_embd.weight": matrix(vocab_size, dim),
        "output_norm.weight": np.ones(dim, dtype=np.float32),
        "output.weight": matrix(vocab_size, dim),
    }
    for block in range(spec.block_count):
        prefix = f"blk.{block}."
        tensors |= {
            prefix + "attn_norm.weight": np.ones(dim, dtype=np.float32),
            prefix + "attn_q.weight": matrix(dim, dim),
            prefix + "attn_k.weight": matrix(kv_dim, dim),
            prefix + "attn_v.weight": matrix(kv_dim, dim),
            prefix + "attn_output.weight": matrix(dim, dim),
            prefix + "ffn_norm.weight": np.ones(dim, dtype=np.float32),
            prefix + "ffn_gate.weight": matrix(ff, dim),
            prefix + "ffn_up.weight": matrix(ff, dim),
            prefix + "ffn_down.weight": matrix(dim, ff),
        }
    return tensors


def build_tiny_model(vocab_path: Path, dest: Path, spec: TinyModelSpec) -> Path:
    """Write a random-weight Llama-3 GGUF that uses the real Llama-3 tokenizer."""
    import gguf

    fields = _tokenizer_fields(vocab_path)
    tokens = fields["tokenizer.ggml.tokens"]
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp")
    writer = gguf.GGUFWriter(str(tmp), arch="llama")
    writer.add_name(f"perflab-tiny-llama3-d{spec.embedding_length}-l{spec.block_count}")
    writer.add_block_count(spec.block_count)
    writer.add_context_length(spec.context_length)
    writer.add_embedding_length(spec.embedding_length)
    writer.add_feed_forward_length(spec.feed_forward_length)
    writer.add_head_count(spec.head_count)
    writer.add_head_count_kv(spec.head_count_kv)
    writer.add_rope_freq_base(500000.0)
    writer.add_rope_dimension_count(spec.embedding_length // spec.head_count)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(len(tokens))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_tokenizer_model(fields["tokenizer.ggml.model"])
    writer.add_tokenizer_pre(fields["tokenizer.ggml.pre"])
    writer.add_token_list(tokens)
    writer.add_token_types(fields["tokenizer.ggml.token_type"])
    writer.add_token_merges(fields["tokenizer.ggml.merges"])
    writer.add_bos_token_id(fields["tokenizer.ggml.bos_token_id"])
    writer.add_eos_token_id(fields["tokenizer.ggml.eos_token_id"])
    for name, array in _weights(spec, len(tokens)).items():
        writer.add_tensor(name, array)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    os.replace(tmp, dest)
    return dest
