"""Where the model lived (Ollama's ``/api/ps``, read in each experiment once the
model was loaded): on the GPU, spilled (part of it in CPU memory) or on the CPU.

A spilled model decodes at the pace of its CPU part: each token passes every
layer, and the layers in CPU memory are read at CPU memory bandwidth, an order
of magnitude below a GPU's. The finding is the least GPU-resident reading of the
run, with how many experiments were read and how many of them spilled.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from perflab.engines.ollama_ps import ModelPlacement


class Where(Enum):
    GPU = "gpu"  # size_vram == size
    SPILLED = "spilled"  # 0 < size_vram < size
    CPU = "cpu"  # size_vram == 0


@dataclass(frozen=True)
class PlacementFinding:
    where: Where
    model: str
    size_bytes: int
    size_vram_bytes: int
    gpu_share: float  # of the least resident reading
    context_length: int | None
    experiment_id: str  # the experiment of that reading
    n_read: int  # experiments whose /api/ps listed the model
    n_spilled: int  # of them, those not wholly in GPU memory
    n_unlisted: int  # experiments that read /api/ps and did not find the model loaded

    @property
    def cpu_share(self) -> float:
        return 1.0 - self.gpu_share


def where(placement: ModelPlacement) -> Where:
    if placement.cpu_only:
        return Where.CPU
    return Where.SPILLED if placement.spilled else Where.GPU


def summary(readings: list[tuple[str, dict | None]]) -> PlacementFinding | None:
    """``readings``: (experiment id, its metadata's ``placement``) for each experiment
    whose engine reads ``/api/ps``; None when there is none or no reading found the model."""
    found = [(eid, ModelPlacement.from_dict(p)) for eid, p in readings if isinstance(p, dict)]
    if not found:
        return None
    experiment_id, least = min(found, key=lambda item: (item[1].gpu_share, item[0]))
    return PlacementFinding(
        where=where(least),
        model=least.model or least.name,
        size_bytes=least.size,
        size_vram_bytes=least.size_vram,
        gpu_share=least.gpu_share,
        context_length=least.context_length,
        experiment_id=experiment_id,
        n_read=len(found),
        n_spilled=sum(p.gpu_share < 1.0 for _, p in found),
        n_unlisted=len(readings) - len(found),
    )
