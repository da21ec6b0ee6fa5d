"""A daemon started by ``testnet up`` or ``bench`` runs the installed pbftd,
whatever directory the admin (or an A/B script) started it from."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbftd.testnet import CourtFiles, spawn_daemon

SHADOW_EXIT = 99


def test_a_pbftd_folder_in_the_callers_directory_does_not_shadow_the_package(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shadow = tmp_path / "checkout"
    (shadow / "pbftd").mkdir(parents=True)
    (shadow / "pbftd" / "__init__.py").write_text(f"raise SystemExit({SHADOW_EXIT})\n")
    court = tmp_path / "court"
    court.mkdir()
    monkeypatch.chdir(shadow)
    # a relative court folder, as `pbftd testnet up --dir ./tn` gives: it must
    # still be found once the daemon runs in the court's folder
    proc = spawn_daemon(CourtFiles("spc", Path("../court"), Path("../court/config.toml"),
                                   "http://127.0.0.1:1/"))
    assert proc.wait(timeout=60) not in (0, SHADOW_EXIT)
    log = (court / "pbftd.log").read_text()
    assert str(court.resolve() / "config.toml") in log, log
