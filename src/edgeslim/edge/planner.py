"""Where should inference run? A Neurosurgeon-style planner (Kang et al., ASPLOS 2017).

For every candidate placement -- all on the device, full offload of the raw input, and a split
at every cut point -- it predicts:

    latency = device time of the head + uplink transfer of the cut tensor + RTT
              + server time of the tail + downlink transfer of the result + request overhead
    device energy = P_active x head time + P_radio x transfer time + P_idle x waiting time

Compute times come from per-layer times measured on this host (``profile_layers``), scaled to
each profile by the ratio of effective GFLOP/s (int8 models by the int8-adjusted ratio).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, config_error
from ..serve.tensor_format import header_size
from .calibrate import HostCalibration, MemoryRefusal, check_memory
from .graph import CutPoint
from .layer_profile import LayerProfile
from .profiles import DeviceProfile, NetworkProfile


class PlanConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Literal["latency", "energy"] = "latency"
    max_uplink_bytes: int | None = Field(None, ge=0, description="refuse placements that send more")
    keep_raw_data_on_device: bool = Field(False, description="forbid sending the raw input (full offload)")
    quantize_cut: bool = Field(False, description="send float cut tensors as uint8 + scale/zero point")
    request_overhead_ms: float = Field(0.0, ge=0, description="fixed cost of one request (HTTP stack)")
    http_header_bytes: int = Field(250, ge=0, description="HTTP request/response header bytes, each way")


def plan_config(**fields) -> PlanConfig:
    """A validated PlanConfig; a bad value raises ConfigError naming the field."""
    try:
        return PlanConfig(**fields)
    except ValidationError as e:
        raise config_error(e, "plan option") from None


@dataclass
class PlanOption:
    placement: str  # "on-device", "offload" or "split"
    cut: str
    position: int
    device_ms: float
    uplink_ms: float
    rtt_ms: float
    server_ms: float
    downlink_ms: float
    overhead_ms: float
    latency_ms: float
    energy_mj: float
    uplink_bytes: int
    downlink_bytes: int
    device_memory_mb: float
    feasible: bool = True
    reason: str = ""

    @property
    def label(self) -> str:
        return self.placement if self.placement != "split" else f"split@{self.cut}"


@dataclass
class Plan:
    device: DeviceProfile
    server: DeviceProfile
    network: NetworkProfile
    config: PlanConfig
    options: list[PlanOption]
    best: PlanOption

    def rows(self) -> list[dict]:
        rows = []
        for o in self.options:
            r = asdict(o)
            r["option"] = o.label + (" *" if o is self.best else "")
            rows.append(r)
        return rows

    def to_dict(self) -> dict:
        return {"device": self.device.model_dump(), "server": self.server.model_dump(),
                "network": self.network.model_dump(), "config": self.config.model_dump(),
                "best": self.best.label, "options": [asdict(o) | {"label": o.label} for o in self.options]}


TABLE_COLUMNS = ["option", "device_ms", "uplink_ms", "rtt_ms", "server_ms", "downlink_ms", "latency_ms",
                 "energy_mj", "uplink_bytes", "feasible", "reason"]


def compute_scale(host: HostCalibration, target: DeviceProfile, int8: bool) -> float:
    """Multiply a time measured on this host by this to get the time on ``target``."""
    host_speed = host.gflops_fp32 * (host.int8_speedup if int8 else 1.0)
    target_speed = target.gflops_fp32 * (target.int8_speedup if int8 else 1.0)
    return host_speed / target_speed


def sent_bytes(cut: CutPoint, quantize: bool) -> int:
    """Bytes of the tensor message for ``cut`` (header included)."""
    if quantize and cut.dtype == "float32":
        return header_size(len(cut.shape), quantized=True) + cut.bytes // 4
    return header_size(len(cut.shape)) + cut.bytes


def _option(profile: LayerProfile, cut: CutPoint, placement: str, device: DeviceProfile,
            server: DeviceProfile, network: NetworkProfile, host: HostCalibration, cfg: PlanConfig) -> PlanOption:
    info = profile.info
    last = len(info.nodes) - 1
    int8 = info.is_int8
    head_ms, tail_ms = profile.head_ms(cut), profile.tail_ms(cut)
    # each side that runs a model pays the runtime's fixed per-run cost once
    device_ms = (head_ms + profile.overhead_ms if cut.position >= 0 else 0.0) * compute_scale(host, device, int8)
    server_ms = (tail_ms + profile.overhead_ms if placement != "on-device" else 0.0) * compute_scale(
        host, server, int8)
    if placement == "on-device":
        up = down = 0
        uplink_ms = downlink_ms = rtt = overhead = 0.0
    else:
        out = info.cut(info.output_names[0])
        up = sent_bytes(cut, cfg.quantize_cut and placement == "split") + cfg.http_header_bytes
        down = sent_bytes(out, False) + cfg.http_header_bytes
        uplink_ms = up * 8 / (network.uplink_mbps * 1e6) * 1e3
        downlink_ms = down * 8 / (network.downlink_mbps * 1e6) * 1e3
        rtt, overhead = network.rtt_ms, cfg.request_overhead_ms
    latency = device_ms + uplink_ms + rtt + server_ms + downlink_ms + overhead
    energy_mj = (device.power_active_w * device_ms + network.radio_power_w * (uplink_ms + downlink_ms)
                 + device.power_idle_w * (rtt + server_ms + overhead))
    head_mem = info.memory_bytes(0, cut.position) if cut.position >= 0 else 0
    option = PlanOption(placement, cut.tensor, cut.position, device_ms, uplink_ms, rtt, server_ms, downlink_ms,
                        overhead, latency, energy_mj, up, down, head_mem / 2**20)
    reasons = []
    try:
        check_memory(head_mem, device, "the device part")
        if placement != "on-device":
            check_memory(info.memory_bytes(cut.position + 1, last), server, "the server part")
    except MemoryRefusal as e:
        reasons.append(str(e).split(";")[0])
    if cfg.max_uplink_bytes is not None and up > cfg.max_uplink_bytes:
        reasons.append(f"sends {up:,} bytes > --max-uplink-bytes {cfg.max_uplink_bytes:,}")
    if cfg.keep_raw_data_on_device and placement == "offload":
        reasons.append("raw input must stay on the device")
    option.feasible, option.reason = not reasons, "; ".join(reasons)
    return option


def plan(profile: LayerProfile, device: DeviceProfile, server: DeviceProfile, network: NetworkProfile,
         host: HostCalibration, config: PlanConfig | None = None) -> Plan:
    """Predict every placement and choose the best feasible one under ``config.objective``."""
    cfg = config or PlanConfig()
    info = profile.info
    output = info.output_names[0]
    options = []
    for cut in info.cut_points:
        if cut.position < 0:
            placement = "offload"
        elif cut.tensor == output:
            placement = "on-device"
        else:
            placement = "split"
        options.append(_option(profile, cut, placement, device, server, network, host, cfg))
    feasible = [o for o in options if o.feasible]
    if not feasible:
        reasons = "\n  ".join(f"{o.label}: {o.reason}" for o in options[:3] + options[-1:])
        raise ConfigError(f"no placement of this model satisfies the constraints on device {device.name!r}:\n  "
                          f"{reasons}")
    key = (lambda o: (o.latency_ms, o.uplink_bytes)) if cfg.objective == "latency" else (
        lambda o: (o.energy_mj, o.latency_ms))
    return Plan(device, server, network, cfg, options, min(feasible, key=key))


def plot_plans(plans: list[Plan], path: str | Path, title: str = "") -> Path:
    """Latency per placement (one line per network) and bytes sent per placement, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [o.label.replace("split@", "") for o in plans[0].options]
    x = np.arange(len(labels))
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(max(8, 0.28 * len(labels) + 4), 8), sharex=True)
    for p in plans:
        ax1.plot(x, [o.latency_ms for o in p.options], marker=".", label=f"{p.network.name}")
        b = p.options.index(p.best)
        ax1.scatter([x[b]], [p.best.latency_ms], s=80, facecolors="none", edgecolors="black")
    ax1.set_yscale("log")
    ax1.set_ylabel("predicted latency (ms)")
    ax1.legend(title="network (o = best)")
    ax1.set_title(title or f"device {plans[0].device.name}, server {plans[0].server.name}")
    ax2.plot(x, [max(o.uplink_bytes, 1) for o in plans[0].options], marker=".", color="tab:gray")
    ax2.set_yscale("log")
    ax2.set_ylabel("bytes sent by the device")
    ax2.set_xticks(x, labels, rotation=90, fontsize=7)
    fig.tight_layout()
    from ..report.figures import save_figure

    return save_figure(fig, path)
