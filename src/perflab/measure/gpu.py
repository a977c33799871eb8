"""NVIDIA GPU telemetry through NVML: utilisation, memory and power, and energy per token.

``open_gpus`` finds the GPUs once per experiment; when there is none (no
``nvidia-ml-py`` package, no driver, no device) it says why in one line, and
every experiment records that reason (``gpu_record``) instead of leaving the
GPU fields silently out. See docs/resources.md and docs/metrics.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

GB = 1e9
MW_PER_W = 1000.0  # nvmlDeviceGetPowerUsage answers in milliwatts


@dataclass(frozen=True)
class Gpus:
    """The NVML handles of this machine's GPUs, or why there are none."""

    handles: tuple = ()
    reason: str | None = None  # None when handles were found

    @property
    def present(self) -> bool:
        return bool(self.handles)


def open_gpus() -> Gpus:
    """Initialise NVML and take a handle per GPU; a Gpus with the reason when that fails."""
    try:
        import pynvml
    except ImportError:
        return Gpus(reason="no NVML: the nvidia-ml-py package (import pynvml) is not installed")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001 - NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return Gpus(reason=f"no NVIDIA driver answered NVML ({exc})")
    try:
        count = pynvml.nvmlDeviceGetCount()
        handles = tuple(pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count))
    except Exception as exc:  # noqa: BLE001
        _shutdown()
        return Gpus(reason=f"NVML could not list the GPUs ({exc})")
    if not handles:
        _shutdown()
        return Gpus(reason="NVML answered but lists no GPU")
    return Gpus(handles=handles)


def close_gpus(gpus: Gpus) -> None:
    if gpus.present:
        _shutdown()


def _shutdown() -> None:
    try:
        import pynvml

        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001
        pass


def _power_w(pynvml, handles) -> float | None:
    """Board power summed over the GPUs, W; None when a GPU cannot report it."""
    try:
        return sum(pynvml.nvmlDeviceGetPowerUsage(h) for h in handles) / MW_PER_W
    except Exception:  # noqa: BLE001 - NVMLError_NotSupported on some boards
        return None


def gpu_sample(gpus: Gpus) -> dict:
    """One sample's GPU fields: mean utilisation, memory used and power summed; {} without."""
    if not gpus.present:
        return {}
    try:
        import pynvml

        utilization = [pynvml.nvmlDeviceGetUtilizationRates(h).gpu for h in gpus.handles]
        memory = [pynvml.nvmlDeviceGetMemoryInfo(h).used for h in gpus.handles]
    except Exception:  # noqa: BLE001 - a GPU reading failed: leave the fields out this time
        return {}
    return {
        "gpu_util_percent": sum(utilization) / len(gpus.handles),
        "gpu_mem_used_gb": sum(memory) / GB,
        "gpu_power_w": _power_w(pynvml, gpus.handles),
    }


@dataclass(frozen=True)
class GpuEnergy:
    """Mean power inside the measured window × its length, and that per output token."""

    power_w_mean: float | None  # summed over the GPUs; None without a power sample
    n_power_samples: int
    window_s: float
    energy_j: float | None
    output_tokens: int  # of the window's successful requests
    j_per_output_token: float | None  # None without tokens or power


@dataclass(frozen=True)
class GpuRecord:
    """The experiment's ``gpu`` entry in metadata.json: the devices and their energy,
    or why there is no GPU figure."""

    present: bool
    reason: str | None = None  # only without a GPU
    devices: int | None = None
    energy: GpuEnergy | None = None

    def to_json(self) -> dict:
        if not self.present:
            return {"present": False, "reason": self.reason}
        energy = asdict(self.energy) if self.energy is not None else {}
        return {"present": True, "devices": self.devices} | energy

    @classmethod
    def from_json(cls, data: dict) -> GpuRecord:
        if not data.get("present"):
            return cls(present=False, reason=data.get("reason"))
        names = [f.name for f in fields(GpuEnergy)]
        energy = GpuEnergy(**{n: data[n] for n in names}) if names[0] in data else None
        return cls(present=True, devices=data.get("devices"), energy=energy)


def gpu_record(
    gpus: Gpus | None, samples: list[dict], window: tuple[float, float], output_tokens: int
) -> GpuRecord:
    """The experiment's GPU record: without a GPU, why; with one, the devices and the
    energy of the samples inside the measured ``window``."""
    if gpus is None:
        return GpuRecord(present=False, reason="the sampler did not run")
    if not gpus.present:
        return GpuRecord(present=False, reason=gpus.reason)
    energy_used = energy(samples, window, output_tokens)
    return GpuRecord(present=True, devices=len(gpus.handles), energy=energy_used)


def energy(samples: list[dict], window: tuple[float, float], output_tokens: int) -> GpuEnergy:
    """Mean power inside ``window`` × its length ÷ ``output_tokens``: J per output token."""
    start, end = window
    powers = [
        s["gpu_power_w"]
        for s in samples
        if s.get("gpu_power_w") is not None and start <= s["t"] <= end
    ]
    window_s = max(0.0, end - start)
    mean_w = sum(powers) / len(powers) if powers else None
    energy_j = mean_w * window_s if mean_w is not None else None
    per_token = energy_j / output_tokens if energy_j is not None and output_tokens > 0 else None
    return GpuEnergy(
        power_w_mean=mean_w,
        n_power_samples=len(powers),
        window_s=window_s,
        energy_j=energy_j,
        output_tokens=output_tokens,
        j_per_output_token=per_token,
    )
