"""The systemd unit: parsed for the settings we rely on, and verified by systemd."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

import config

UNIT = Path(config.__file__).parent / "pbftd.service"

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "ReadWritePaths": "/var/lib/pbftd",
    "StateDirectory": "pbftd",
    "ConfigurationDirectory": "pbftd",
    "UMask": "0077",
}


def _service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read(UNIT, encoding="utf-8")
    return parser["Service"]


def test_unit_runs_the_daemon_under_systemd_supervision():
    service = _service()
    assert service["Type"] == "notify"
    assert service["NotifyAccess"] == "main"
    assert service["ExecStart"] == "/usr/local/bin/pbftd run --config /etc/pbftd/config.toml"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "2"
    assert service["WatchdogSec"] == "30"
    assert service["TimeoutStopSec"] == "60"
    assert service["KillSignal"] == "SIGTERM"
    assert (service["User"], service["Group"]) == ("pbftd", "pbftd")
    assert service["LimitNOFILE"] == "65536"


@pytest.mark.parametrize(("key", "value"), HARDENING.items())
def test_unit_is_hardened(key, value):
    assert _service()[key] == value


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not on PATH (install systemd) to verify config/pbftd.service")
    # verify also checks that ExecStart exists; point it at a binary that does,
    # so the check is about the unit's syntax and options.
    text = UNIT.read_text(encoding="utf-8")
    lines = [
        "ExecStart=/bin/true" if line.startswith("ExecStart=") else line
        for line in text.splitlines()
    ]
    copy = tmp_path / "pbftd.service"
    copy.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pbftd.service" not in result.stderr, result.stderr
