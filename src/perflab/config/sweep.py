"""A config's sweep: the experiments its suites, targets and repeats ask for."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from perflab.config.targets import target_names

PROMPT_CACHE_MODES = ("bust", "reuse")
EXPERIMENT_ID_PATTERN = (
    r"([a-z0-9][a-z0-9_]*--)?[a-z0-9_]+-t[0-9.]+-w[0-9]+-(n[0-9]+|d[0-9.]+s)"
    r"(-(q[0-9.]+|s[0-9]+of[0-9]+)-(constant|poisson|gamma[0-9.]+))?(-reuse)?(-th[0-9]+)?-r[0-9]+"
)


@dataclass(frozen=True)
class Experiment:
    """One trial of one sweep point: a prompt at a temperature with N workers.

    A condition (``condition_id``) is the sweep point; it runs as ``repeats``
    independent trials, each its own job with id ``<condition_id>-r<trial>``.

    With an ``arrival`` it is open-loop load instead: requests arrive at ``rate`` per
    second (``arrival`` constant or poisson, gamma gaps of shape ``burstiness``) and
    ``workers`` bounds how many are in flight at once. A point of a sweep to the limit
    (``sweep_point`` k of ``sweep_points``) has its rate from the sweep's probe.

    ``threads``: the compute threads the engine runs with for this point (the threads
    suite), in place of the engine's own setting; None keeps the engine's.
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
    rate: float | None = None  # requests/s offered; None: closed loop, or a sweep point
    arrival: str | None = None
    burstiness: float | None = None
    sweep_point: int | None = None  # k of a sweep to the limit: its rate comes from the probe
    sweep_points: int | None = None
    threads: int | None = None

    @property
    def open_loop(self) -> bool:
        return self.arrival is not None

    @property
    def point_id(self) -> str:
        """The sweep point, the same for every target."""
        reuse = "-reuse" if self.prompt_cache == "reuse" else ""
        threads = f"-th{self.threads}" if self.threads is not None else ""
        base = f"{self.prompt_name}-t{self.temperature:g}-w{self.workers}-{self.size_id}"
        return f"{base}{self.arrivals_id}{reuse}{threads}"

    @property
    def block(self) -> str:
        """The points a trial measures back to back: those of one size (requests or
        duration, closed or open loop). A suite's points share a size, so the points one
        verdict compares run minutes apart at most, not across the whole trial."""
        return f"{self.size_id}-open" if self.open_loop else self.size_id

    @property
    def size_id(self) -> str:
        """``n<requests>``, or ``d<duration>s`` for a point measured for a time."""
        return f"n{self.requests}" if self.requests is not None else f"d{self.duration_s:g}s"

    @property
    def arrivals_id(self) -> str:
        """``-q<rate>-<arrival>`` for open-loop load, ``-s<k>of<n>-<arrival>`` for point k of
        a sweep of n; poisson with burstiness b≠1 is gamma<b>."""
        if not self.open_loop:
            return ""
        shape = self.arrival
        if self.arrival == "poisson" and self.burstiness not in (None, 1.0):
            shape = f"gamma{self.burstiness:g}"
        if self.sweep_point is not None:
            return f"-s{self.sweep_point}of{self.sweep_points}-{shape}"
        return f"-q{self.rate:g}-{shape}"

    @property
    def condition_id(self) -> str:
        return f"{self.target}--{self.point_id}" if self.target else self.point_id

    @property
    def id(self) -> str:
        return f"{self.condition_id}-r{self.trial}"

    def params(self) -> dict:
        # every field is a plain value: a shallow dict is what asdict's deep copy gave
        params = {item.name: getattr(self, item.name) for item in fields(self)} | {
            "id": self.id,
            "condition_id": self.condition_id,
            "suites": list(self.suites),
        }
        if self.target is None:  # a single-target spec stays as it was: nothing reruns
            del params["target"]
        if not self.open_loop:  # so does a closed-loop one
            for name in ("rate", "arrival", "burstiness"):
                del params[name]
        if self.sweep_point is None:
            del params["sweep_point"]
            del params["sweep_points"]
        if self.threads is None:  # the engine's own threads: the spec stays as it was
            del params["threads"]
        return params


RATE_FIXED = ("prompt", "max_in_flight", "requests", "arrival", "burstiness")


def rate_axis(rate: dict) -> tuple[str, list]:
    """The rate suite's axis: its offered rates, or the points of a sweep to the limit."""
    if rate["rates"] == "sweep":
        return "sweep_point", list(range(1, rate["sweep_points"] + 1))
    return "rate", [float(value) for value in rate["rates"]]


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
        "rate": (*rate_axis(suites["rate"]), RATE_FIXED),
        "threads": ("threads", suites["threads"]["threads"], ("prompt", "workers", "requests")),
    }
    points = []
    for suite, (axis, values, fixed) in sweeps.items():
        if not suites[suite]["enabled"]:
            continue
        held = {key: suites[suite][key] for key in fixed}
        if "prompt" in held:
            held["prompt_name"] = held.pop("prompt")
        if "max_in_flight" in held:  # open loop: the bound on requests in flight
            held["workers"] = held.pop("max_in_flight")
        if "burstiness" in held:
            held["burstiness"] = float(held["burstiness"])
        if axis != "temperature" and suites[suite].get("temperature") is not None:
            held["temperature"] = suites[suite]["temperature"]  # the suite's own, else generation's
        if suite == "rate" and axis == "sweep_point":
            held["sweep_points"] = suites["rate"]["sweep_points"]
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
