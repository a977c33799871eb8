"""A config's sweep: the experiments its suites, targets and repeats ask for."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from perflab.config.targets import target_names

PROMPT_CACHE_MODES = ("bust", "reuse")
EXPERIMENT_ID_PATTERN = (
    r"([a-z0-9][a-z0-9_]*--)?[a-z0-9_]+-t[0-9.]+-w[0-9]+-(n[0-9]+|d[0-9.]+s)(-reuse)?-r[0-9]+"
)


@dataclass(frozen=True)
class Experiment:
    """One trial of one sweep point: a prompt at a temperature with N workers.

    A condition (``condition_id``) is the sweep point; it runs as ``repeats``
    independent trials, each its own job with id ``<condition_id>-r<trial>``.
    """

    prompt_name: str
    prompt: str
    temperature: float
    workers: int
    requests: int | None = None
    duration_s: float | None = None
    prompt_cache: str = "bust"
    trial: int = 1
    suites: tuple[str, ...] = field(default=(), compare=False)
    target: str | None = None  # None: the config's one engine, and no prefix on the id

    @property
    def point_id(self) -> str:
        """The sweep point, the same for every target."""
        size = f"n{self.requests}" if self.requests is not None else f"d{self.duration_s:g}s"
        reuse = "-reuse" if self.prompt_cache == "reuse" else ""
        return f"{self.prompt_name}-t{self.temperature:g}-w{self.workers}-{size}{reuse}"

    @property
    def condition_id(self) -> str:
        return f"{self.target}--{self.point_id}" if self.target else self.point_id

    @property
    def id(self) -> str:
        return f"{self.condition_id}-r{self.trial}"

    def params(self) -> dict:
        params = asdict(self) | {
            "id": self.id,
            "condition_id": self.condition_id,
            "suites": list(self.suites),
        }
        if self.target is None:  # a single-target spec stays as it was: nothing reruns
            del params["target"]
        return params


def suite_points(config: dict) -> list[tuple[str, dict]]:
    """(suite, point) for every sweep value of every enabled suite."""
    suites = config["suites"]
    sweeps = {
        # suite: (the axis it varies, its values, what it holds fixed)
        "basic": ("prompt_name", suites["basic"]["prompts"], ("workers", "requests")),
        "prompt_length": (
            "prompt_name",
            suites["prompt_length"]["prompts"],
            ("workers", "requests"),
        ),
        "temperature": (
            "temperature",
            suites["temperature"]["temperatures"],
            ("prompt", "workers", "requests"),
        ),
        "concurrency": ("workers", suites["concurrency"]["workers"], ("prompt", "requests")),
        "resources": (None, [None], ("prompt", "workers", "duration_s")),
        "kv_cache": ("prompt_cache", list(PROMPT_CACHE_MODES), ("prompt", "workers", "requests")),
    }
    points = []
    for suite, (axis, values, fixed) in sweeps.items():
        if not suites[suite]["enabled"]:
            continue
        held = {key: suites[suite][key] for key in fixed}
        if "prompt" in held:
            held["prompt_name"] = held.pop("prompt")
        points += [(suite, held | ({axis: value} if axis else {})) for value in values]
    for _, point in points:
        point["temperature"] = float(point.get("temperature", config["generation"]["temperature"]))
        point["prompt"] = config["prompts"][point["prompt_name"]]
        point.setdefault("prompt_cache", config["prompt_cache"])
    return points


def expand_conditions(config: dict) -> dict[str, Experiment]:
    """One trial-1 experiment per distinct sweep point; points shared by suites run once."""
    merged: dict[str, tuple[dict, list[str]]] = {}
    for suite, point in suite_points(config):
        experiment = Experiment(**point)
        _, suites = merged.setdefault(experiment.condition_id, (point, []))
        if suite not in suites:
            suites.append(suite)
    return {
        condition_id: Experiment(**point, suites=tuple(suites))
        for condition_id, (point, suites) in merged.items()
    }


def expand_experiments(config: dict) -> dict[str, Experiment]:
    """Every trial of every condition on every target, keyed by experiment id, in the
    order the workflow runs them (``perflab.config.design``): all first trials, then all
    second trials, and so on; within a trial the points in an order drawn from
    ``order_seed``, each point's targets back to back, their order turned every trial."""
    from perflab.config.design import design_order

    conditions = expand_conditions(config).values()
    names = target_names(config) or (None,)
    ordered = design_order(conditions, names, config["repeats"], config["order_seed"])
    return {experiment.id: experiment for experiment in ordered}
