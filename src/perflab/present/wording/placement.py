"""Where the model lived (Ollama's ``/api/ps``), in words, for "Resource Usage"."""

from __future__ import annotations

from perflab.analyse.findings.placement import PlacementFinding, Where
from perflab.present.spill import spilled_text

FIX = "Fix: a smaller num_ctx, a smaller quantization or model, or one model loaded at a time."


def _read(f: PlacementFinding) -> str:
    """Which readings the sentence rests on."""
    plural = "s" if f.n_read != 1 else ""
    text = f"/api/ps in {f.n_read} experiment{plural}"
    if f.context_length:
        text += f", {f.context_length:,}-token context"
    if f.n_unlisted:
        text += f"; {f.n_unlisted} more found it unloaded (keep_alive)"
    return text


def placement(f: PlacementFinding) -> str:
    """One sentence: on the GPU, spilled (with the share in CPU memory) or all on the CPU."""
    size = f"{f.size_bytes / 1e9:.2f} GB"
    if f.where is Where.GPU:
        return f"all of {f.model} in GPU memory ({size}; {_read(f)})."
    if f.where is Where.CPU:
        return (
            f"all on the CPU: none of {f.model}'s {size} in GPU memory (size_vram 0), so "
            f"decode runs at CPU memory bandwidth: no GPU, or none with room ({_read(f)})."
        )
    where = f"in {f.experiment_id}" if f.n_read == 1 else f"least in {f.experiment_id}"
    return (
        f"{spilled_text(f.cpu_share)} ({f.model}: {f.size_vram_bytes / 1e9:.2f} of {size} in GPU memory {where}, "
        f"spilled in {f.n_spilled} of {f.n_read}; {_read(f)}). {FIX}"
    )
