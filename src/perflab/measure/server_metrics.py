"""What llama-server says about itself while it is measured: its Prometheus
``/metrics`` (requests processing and deferred, tokens and seconds of prompt
and generation, decode calls) and ``/slots`` (each slot's tokens in its KV
cache), read on the sampler's clock into each resource sample as ``llama_*``
fields (docs/resources.md).

Both need ``--metrics --slots`` (``engine.launch.metrics``, on by default). A
reading that fails leaves the fields out of that sample; the scraper never
stops the sampler.
"""

from __future__ import annotations

import math

SCRAPE_TIMEOUT_S = 0.25
# Prometheus names (after "llamacpp:") → sample fields.
METRICS = {
    "requests_processing": "llama_requests_processing",
    "requests_deferred": "llama_requests_deferred",
    "prompt_tokens_total": "llama_prompt_tokens_total",
    "prompt_tokens_cached_total": "llama_prompt_tokens_cached_total",
    "prompt_seconds_total": "llama_prompt_seconds_total",
    "tokens_predicted_total": "llama_tokens_predicted_total",
    "tokens_predicted_seconds_total": "llama_tokens_predicted_seconds_total",
    "n_decode_total": "llama_n_decode_total",
    "n_busy_slots_per_decode": "llama_busy_slots_per_decode",
}


def parse_prometheus(text: str) -> dict[str, float]:
    """``llamacpp:NAME VALUE`` lines as {NAME: VALUE} (labelled series are skipped)."""
    values = {}
    for line in text.splitlines():
        if not line.startswith("llamacpp:") or "{" in line:
            continue
        name, _, value = line[len("llamacpp:") :].partition(" ")
        try:
            number = float(value)
        except ValueError:
            continue
        if math.isfinite(number):
            values[name] = number
    return values


def slots_fields(slots: object) -> dict:
    """Slots busy, and tokens held in the KV cache against its size, over all slots."""
    if not isinstance(slots, list):
        return {}
    busy = held = size = 0
    for slot in slots:
        if not isinstance(slot, dict):
            continue
        size += int(slot.get("n_ctx") or 0)
        if slot.get("is_processing"):
            busy += 1
            decoded = (slot.get("next_token") or [{}])[0].get("n_decoded") or 0
            held += int(slot.get("n_prompt_tokens") or 0) + int(decoded)
    fields = {"llama_slots": len(slots), "llama_slots_processing": busy}
    if size:
        fields |= {"llama_kv_tokens": held, "llama_kv_size": size, "llama_kv_used": held / size}
    return fields


class LlamaServerScraper:
    """Reads ``/metrics`` and ``/slots`` of the llama-server at ``url``; call it for
    the fields of one sample."""

    def __init__(self, url: str):
        import httpx

        self.client = httpx.Client(base_url=url, timeout=SCRAPE_TIMEOUT_S, trust_env=False)

    def __call__(self) -> dict:
        import httpx

        fields: dict = {}
        try:
            metrics = parse_prometheus(self.client.get("/metrics").text)
            fields |= {METRICS[k]: v for k, v in metrics.items() if k in METRICS}
            fields |= slots_fields(self.client.get("/slots").json())
        except (httpx.HTTPError, ValueError):
            pass
        return fields

    def close(self) -> None:
        self.client.close()


def summarize_server_metrics(samples: list[dict], window: tuple[float, float]) -> dict:
    """Over the measured window: the most requests the server ran at once and kept
    waiting, the most of its KV cache in use, and its own prompt and generation rates
    (counter differences between the window's first and last reading)."""
    from perflab.measure.samples import in_window

    chosen = [s for s in in_window(samples, window) if "llama_requests_processing" in s]
    if not chosen:
        return {"n_server_metric_samples": 0}

    def peak(key: str):
        values = [s[key] for s in chosen if s.get(key) is not None]
        return max(values) if values else None

    def rate(tokens: str, seconds: str):
        first, last = chosen[0], chosen[-1]
        if tokens not in first or tokens not in last:
            return None
        spent = last[seconds] - first[seconds]
        return (last[tokens] - first[tokens]) / spent if spent > 0 else None

    processing = [s["llama_requests_processing"] for s in chosen]
    return {
        "n_server_metric_samples": len(chosen),
        "server_requests_processing_max": max(processing),
        "server_requests_processing_mean": sum(processing) / len(processing),
        "server_requests_deferred_max": peak("llama_requests_deferred"),
        "server_kv_used_max": peak("llama_kv_used"),
        "server_kv_tokens_max": peak("llama_kv_tokens"),
        "server_prompt_tps": rate("llama_prompt_tokens_total", "llama_prompt_seconds_total"),
        "server_decode_tps": rate(
            "llama_tokens_predicted_total", "llama_tokens_predicted_seconds_total"
        ),
    }
