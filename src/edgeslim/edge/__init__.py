"""Edge execution: device/network profiles, per-layer profiling, cut points, the split planner.

The device-side client and the tail server live in ``edgeslim.serve``.
"""
from .api import plan_model
from .calibrate import HostCalibration, MemoryRefusal, calibrate_host, check_memory, emulated_device
from .graph import CutPoint, GraphInfo, analyze, prepare_model, split_model
from .layer_profile import LayerProfile, profile_layers
from .planner import Plan, PlanConfig, PlanOption, compute_scale, plan, plan_config, plot_plans
from .profiles import DeviceProfile, NetworkProfile, ProfileCatalog, load_profiles, parse_profiles

__all__ = ["plan_model", "HostCalibration", "MemoryRefusal", "calibrate_host", "check_memory", "emulated_device",
           "CutPoint", "GraphInfo", "analyze", "prepare_model", "split_model",
           "LayerProfile", "profile_layers", "Plan", "PlanConfig", "PlanOption", "compute_scale", "plan", "plan_config",
           "plot_plans", "DeviceProfile", "NetworkProfile", "ProfileCatalog", "load_profiles", "parse_profiles"]
