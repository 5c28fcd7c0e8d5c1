"""Device and network profiles: a YAML catalog shipped with the package, extensible by users.

Every file has the same layout (``devices:`` and/or ``networks:`` mappings of name -> fields);
user files given with ``--profiles`` add new entries or replace built-in ones of the same name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._io import parse_yaml_mapping, read_yaml_mapping
from ..errors import ConfigError, config_error

BUILTIN_DIR = Path(__file__).parent / "profiles"


class DeviceProfile(BaseModel):
    """Compute, memory and power of a device that runs (part of) a model."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    gflops_fp32: float = Field(gt=0, description="effective fp32 GFLOP/s for DNN inference")
    int8_speedup: float = Field(1.0, ge=1.0, le=64.0, description="fp32 latency / int8 latency")
    memory_mb: float = Field(gt=0, description="memory the model may use (weights + activations)")
    power_active_w: float = Field(ge=0)
    power_idle_w: float = Field(ge=0)


class NetworkProfile(BaseModel):
    """Link between the device and a server."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    uplink_mbps: float = Field(gt=0)
    downlink_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)
    radio_power_w: float = Field(1.0, ge=0, description="device radio power while transferring")


class _ProfileFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    devices: dict[str, DeviceProfile] = {}
    networks: dict[str, NetworkProfile] = {}


@dataclass
class ProfileCatalog:
    devices: dict[str, DeviceProfile] = field(default_factory=dict)
    networks: dict[str, NetworkProfile] = field(default_factory=dict)

    def device(self, name: str) -> DeviceProfile:
        if name not in self.devices:
            raise ConfigError(f"unknown device profile {name!r}; known: {', '.join(sorted(self.devices))} "
                              "(add your own with --profiles FILE.yaml)")
        return self.devices[name]

    def network(self, name: str) -> NetworkProfile:
        if name not in self.networks:
            raise ConfigError(f"unknown network profile {name!r}; known: {', '.join(sorted(self.networks))} "
                              "(add your own with --profiles FILE.yaml)")
        return self.networks[name]

    def add(self, other: "ProfileCatalog") -> None:
        self.devices.update(other.devices)
        self.networks.update(other.networks)


_EXPECTED = "'devices:' and/or 'networks:'"


def parse_profiles(text: str, source: str | os.PathLike = "<string>") -> ProfileCatalog:
    """Validate one YAML document; errors name the file and the bad field (e.g. devices.pi.memory_mb)."""
    return _catalog(parse_yaml_mapping(text, source, "profile file", _EXPECTED), source)


def _catalog(raw: dict, source: str | os.PathLike) -> ProfileCatalog:
    try:
        parsed = _ProfileFile.model_validate(raw)
    except ValidationError as e:
        raise config_error(e, f"profile file {source}") from None
    for group in (parsed.devices, parsed.networks):
        for name, prof in group.items():
            prof.name = name
    return ProfileCatalog(dict(parsed.devices), dict(parsed.networks))


def load_profiles(extra: Iterable[str | os.PathLike] = ()) -> ProfileCatalog:
    """The built-in catalog plus the user files in ``extra`` (later files win)."""
    catalog = ProfileCatalog()
    files = sorted(BUILTIN_DIR.glob("*.yaml")) + [Path(p) for p in extra]
    for path in files:
        if not path.exists():
            raise ConfigError(f"profile file not found: {path}")
        catalog.add(_catalog(read_yaml_mapping(path, "profile file", _EXPECTED), path))
    return catalog
