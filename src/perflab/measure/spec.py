"""What a measuring job (an experiment or a probe) is given of the config: the
target's settings, in its spec; nothing else of the config reruns it."""

SETTINGS_KEYS = (
    "engine",
    "generation",
    "calibration",
    "warmup_requests",
    "error_budget",
    "sampler",
)
