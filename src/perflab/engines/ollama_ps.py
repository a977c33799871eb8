"""Where a loaded Ollama model lives, read from ``GET /api/ps``.

Ollama lists each loaded model with ``size`` (the memory the loaded model takes:
weights, KV cache and compute buffers) and ``size_vram`` (the part of it in GPU
memory). ``size_vram == size``: wholly on the GPU. ``0 < size_vram < size``: the
model did not fit and its remaining layers run on the CPU, so every decoded token
waits for the CPU's share at CPU memory bandwidth. ``size_vram == 0``: all on the
CPU. ``ollama ps`` prints the same figures as ``48%/52% CPU/GPU``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class ModelPlacement:
    """One loaded model as ``/api/ps`` lists it."""

    name: str
    model: str
    size: int  # bytes the loaded model takes, GPU and CPU memory together
    size_vram: int  # bytes of it in GPU memory
    digest: str | None = None
    context_length: int | None = None  # the context it was loaded with (num_ctx)
    expires_at: str | None = None  # when keep_alive unloads it (ISO 8601)
    parameter_size: str | None = None
    quantization_level: str | None = None

    @property
    def gpu_share(self) -> float:
        """The share of the loaded model in GPU memory, 0 to 1 (1 for an empty model)."""
        if self.size <= 0:
            return 1.0
        return min(1.0, max(0.0, self.size_vram / self.size))

    @property
    def cpu_share(self) -> float:
        return 1.0 - self.gpu_share

    @property
    def spilled(self) -> bool:
        """Part on the GPU, part in CPU memory."""
        return 0 < self.size_vram < self.size

    @property
    def cpu_only(self) -> bool:
        return self.size > 0 and self.size_vram <= 0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ModelPlacement:
        return cls(**{key: data.get(key) for key in cls.__dataclass_fields__})


def _names(name: str) -> set[str]:
    """``name`` as Ollama may list it: without a tag it is ``:latest``."""
    tagged = ":" in name.rsplit("/", 1)[-1]
    return {name} if tagged else {name, f"{name}:latest"}


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _placement(entry: dict) -> ModelPlacement | None:
    size, size_vram = _int(entry.get("size")), _int(entry.get("size_vram"))
    if size is None or size_vram is None or size < 0 or size_vram < 0:
        return None
    details = entry.get("details") if isinstance(entry.get("details"), dict) else {}
    return ModelPlacement(
        name=_text(entry.get("name")) or _text(entry.get("model")) or "",
        model=_text(entry.get("model")) or _text(entry.get("name")) or "",
        size=size,
        size_vram=size_vram,
        digest=_text(entry.get("digest")),
        context_length=_int(entry.get("context_length")),
        expires_at=_text(entry.get("expires_at")),
        parameter_size=_text(details.get("parameter_size")),
        quantization_level=_text(details.get("quantization_level")),
    )


def placement_of(payload: object, model: str) -> ModelPlacement | None:
    """``model``'s entry in an ``/api/ps`` answer; None when it is not loaded or the
    answer is not Ollama's shape."""
    entries = payload.get("models") if isinstance(payload, dict) else None
    if not isinstance(entries, list):
        return None
    wanted = _names(model)
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        if {entry.get("name"), entry.get("model")} & wanted:
            return _placement(entry)
    return None
