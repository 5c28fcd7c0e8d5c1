"""Device/network profile catalog: built-ins, user files, validation messages."""
import pytest

from edgeslim.edge import load_profiles, parse_profiles
from edgeslim.errors import ConfigError

GOOD = """
devices:
  my-board:
    gflops_fp32: 5
    int8_speedup: 2
    memory_mb: 512
    power_active_w: 3
    power_idle_w: 1
networks:
  lora:
    uplink_mbps: 0.05
    downlink_mbps: 0.05
    rtt_ms: 500
"""


def test_builtin_catalog_has_the_documented_profiles():
    cat = load_profiles()
    assert {"raspberry-pi-4", "jetson-nano", "phone", "edge-server", "cloud-server"} <= set(cat.devices)
    assert {"3g", "4g", "5g", "wifi", "ethernet"} <= set(cat.networks)
    assert cat.device("raspberry-pi-4").gflops_fp32 < cat.device("cloud-server").gflops_fp32
    assert cat.network("3g").uplink_mbps < cat.network("wifi").uplink_mbps


def test_user_file_extends_and_overrides(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(GOOD + "  4g:\n    uplink_mbps: 1\n    downlink_mbps: 2\n    rtt_ms: 80\n")
    cat = load_profiles([f])
    assert cat.device("my-board").memory_mb == 512 and cat.device("my-board").name == "my-board"
    assert cat.network("4g").uplink_mbps == 1  # the user's figure replaces the built-in one
    assert "raspberry-pi-4" in cat.devices


@pytest.mark.parametrize("yaml_text, field", [
    ("devices:\n  b:\n    int8_speedup: 2\n    memory_mb: 1\n    power_active_w: 1\n    power_idle_w: 1\n",
     "devices.b.gflops_fp32"),
    ("devices:\n  b:\n    gflops_fp32: -3\n    memory_mb: 1\n    power_active_w: 1\n    power_idle_w: 1\n",
     "devices.b.gflops_fp32"),
    ("networks:\n  n:\n    uplink_mbps: 1\n    downlink_mbps: 1\n    rtt_ms: 1\n    jitter: 3\n", "networks.n.jitter"),
    ("networks:\n  n:\n    uplink_mbps: fast\n    downlink_mbps: 1\n    rtt_ms: 1\n", "networks.n.uplink_mbps"),
    ("gpus: {}\n", "gpus"),
])
def test_validation_errors_name_the_bad_field(yaml_text, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        parse_profiles(yaml_text, "bad.yaml")


def test_unknown_names_and_files_are_clear_errors(tmp_path):
    cat = load_profiles()
    with pytest.raises(ConfigError, match="unknown device profile 'toaster'.*raspberry-pi-4"):
        cat.device("toaster")
    with pytest.raises(ConfigError, match="unknown network profile"):
        cat.network("6g")
    with pytest.raises(ConfigError, match="not found"):
        load_profiles([tmp_path / "missing.yaml"])
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_profiles("devices: [", "broken.yaml")
