"""What one decoded token costs a GGUF model: bytes of weights read, FLOPs, KV cache.

Decoding a token multiplies the hidden state by every weight matrix once, so it
reads every tensor once, quantization included (``n_bytes`` is the stored size).
The token embedding is the exception: a lookup reads one row, unless the model
ties its output head to it (no ``output.weight``), when the head reads it whole.
FLOPs per token are 2 per weight multiplied (a multiply and an add) plus the
attention over the context: QKᵀ and the weighted sum of V, 2 · 2 · head_dim per
head, layer and token of context. The KV cache holds a key and a value vector per
KV head, layer and token, at the cache's element size (f16 by default).
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

EMBEDDING = "token_embd.weight"
OUTPUT_HEAD = "output.weight"
KV_ELEMENT_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "q8_0": 34 / 32, "q4_0": 18 / 32}


@dataclass(frozen=True)
class ModelFacts:
    path: str
    architecture: str
    parameters: int
    weight_bytes: int  # every tensor as stored
    bytes_per_token: int  # weights read to decode one token
    flops_per_token: int  # weights' FLOPs for one token, without attention
    attention_flops_per_context_token: int  # added per token already in the context
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    context_length: int  # the model's trained context

    def flops_at(self, context_tokens: int) -> int:
        return self.flops_per_token + self.attention_flops_per_context_token * context_tokens

    def kv_bytes_per_token(self, cache_type: str = "f16") -> float:
        return 2 * self.layers * self.kv_heads * self.head_dim * KV_ELEMENT_BYTES[cache_type]

    def kv_bytes_at(self, context_tokens: int, cache_type: str = "f16") -> float:
        return self.kv_bytes_per_token(cache_type) * context_tokens


SCALARS = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "?",
    10: "Q",
    11: "q",
    12: "d",
}
STRING, ARRAY = 8, 9


@dataclass(frozen=True)
class _Tensor:
    name: str
    elements: int
    bytes: int
    rows: int  # the last dimension: a row per token for an embedding


class _Cursor:
    """Reads GGUF's little-endian header; array values it only needs the size of
    are skipped, so a 128k-token vocabulary costs no Python object per token."""

    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def read(self, fmt: str):
        (value,) = struct.unpack_from("<" + fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        size = self.read("Q")
        self.at += size
        return self.data[self.at - size : self.at].decode("utf-8", "replace")

    def value(self, kind: int):
        if kind == STRING:
            return self.string()
        if kind != ARRAY:
            return self.read(SCALARS[kind])
        item, count = self.read("I"), self.read("Q")
        if item == STRING:
            for _ in range(count):
                size = self.read("Q")  # read first: it moves the cursor
                self.at += size
        else:
            self.at += struct.calcsize("<" + SCALARS[item]) * count
        return count


def _read_header(path: Path) -> tuple[dict, list[_Tensor]]:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        cursor = _Cursor(data)
        if cursor.read("4s") != b"GGUF":
            raise ValueError(f"{path}: not a GGUF file")
        cursor.read("I")  # version
        n_tensors, n_fields = cursor.read("Q"), cursor.read("Q")
        fields = {}
        for _ in range(n_fields):
            key = cursor.string()
            fields[key] = cursor.value(cursor.read("I"))
        tensors = []
        for _ in range(n_tensors):
            name = cursor.string()
            dims = [cursor.read("Q") for _ in range(cursor.read("I"))]
            block, size = GGML_QUANT_SIZES[GGMLQuantizationType(cursor.read("I"))]
            cursor.read("Q")  # offset
            elements = math.prod(dims)
            tensors.append(_Tensor(name, elements, elements // block * size, dims[-1]))
    return fields, tensors


def read_model_facts(path: str | Path) -> ModelFacts:
    """Read a GGUF's header and tensor table (the weights stay on disk)."""
    fields, listed = _read_header(Path(path))
    arch = fields.get("general.architecture", "llama")
    embedding_length = int(fields[f"{arch}.embedding_length"])
    heads = int(fields[f"{arch}.attention.head_count"])
    kv_heads = int(fields.get(f"{arch}.attention.head_count_kv", heads))
    head_dim = int(fields.get(f"{arch}.attention.key_length", embedding_length // heads))
    layers = int(fields[f"{arch}.block_count"])
    tensors = {t.name: t for t in listed}
    weight_bytes = sum(t.bytes for t in listed)
    parameters = sum(t.elements for t in listed)
    read_bytes, multiplied = weight_bytes, parameters
    embedding = tensors.get(EMBEDDING)
    if embedding is not None and OUTPUT_HEAD in tensors:
        read_bytes -= embedding.bytes - embedding.bytes // embedding.rows
        multiplied -= embedding.elements
    return ModelFacts(
        path=str(path),
        architecture=str(arch),
        parameters=parameters,
        weight_bytes=weight_bytes,
        bytes_per_token=read_bytes,
        flops_per_token=2 * multiplied,
        attention_flops_per_context_token=4 * layers * heads * head_dim,
        layers=layers,
        heads=heads,
        kv_heads=kv_heads,
        head_dim=head_dim,
        context_length=int(fields.get(f"{arch}.context_length", 0)),
    )
