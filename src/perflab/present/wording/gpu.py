"""The GPU in one line, for "Resource Usage": its figures, or why there are none."""

from __future__ import annotations

from perflab.analyse.findings.resources import ResourcesFinding


def gpu(r: ResourcesFinding | None) -> str | None:
    """None when the run's experiments predate GPU records (nothing to say)."""
    if r is None or r.gpu_present is None:
        return None
    if not r.gpu_present:
        return f"no GPU figures: {r.gpu_reason}"
    parts = [f"{r.gpu_devices} GPU{'s' if r.gpu_devices != 1 else ''}"]
    if r.gpu_util_percent_mean is not None:
        parts.append(f"{r.gpu_util_percent_mean:.0f} % mean utilisation")
    if r.gpu_mem_used_gb_max is not None:
        parts.append(f"{r.gpu_mem_used_gb_max:.2f} GB memory used at most")
    if r.gpu_power_w_mean is None:
        parts.append("power not reported by NVML, so no energy per token")
        return ", ".join(parts)
    parts.append(f"{r.gpu_power_w_mean:.0f} W mean power (n={r.gpu_n_power_samples} samples)")
    if r.gpu_j_per_output_token is not None:
        parts.append(
            f"{r.gpu_j_per_output_token:.3g} J per output token "
            f"({r.gpu_energy_j:,.0f} J over the {r.gpu_window_s:.1f} s measured, "
            f"{r.gpu_output_tokens:,} output tokens)"
        )
    return ", ".join(parts)
