"""High-level edge functions: what the CLI commands call."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from .calibrate import HostCalibration, calibrate_host
from .layer_profile import LayerProfile, profile_layers
from .planner import Plan, PlanConfig, plan, plot_plans
from .profiles import load_profiles


def plan_model(model: str | os.PathLike, device: str, network: str, server: str,
               config: PlanConfig | None = None, profile_files: Iterable[str | os.PathLike] = (),
               threads: int = 1, cpus: list[int] | None = None, plot: str | os.PathLike | None = None,
               profile: LayerProfile | None = None, calibration: HostCalibration | None = None
               ) -> tuple[Plan, LayerProfile, HostCalibration]:
    """Profile ``model`` on this host, then plan it for device/network/server profiles by name.
    With ``plot``, also writes a PNG with one latency line per network profile of the catalog."""
    catalog = load_profiles(profile_files)
    dev, net, srv = catalog.device(device), catalog.network(network), catalog.device(server)
    calibration = calibration or calibrate_host(threads, cpus)
    profile = profile or profile_layers(model, threads=threads, cpus=cpus)
    result = plan(profile, dev, srv, net, calibration, config)
    if plot is not None:
        plans = [plan(profile, dev, srv, n, calibration, config.model_copy(update={
            "max_uplink_bytes": None, "keep_raw_data_on_device": False}) if config else None)
            for n in catalog.networks.values()]
        plot_plans(plans, plot, title=f"{Path(model).name}: device {dev.name}, server {srv.name}")
    return result, profile, calibration
