"""Fixtures shared by the config tests: a small valid genesis and config files."""

import copy
import json
from pathlib import Path

import pytest

_COURTS = [
    ("spc", "最高人民法院", "supreme", None, "validator"),
    ("jl-high", "吉林省高级人民法院", "high", "spc", "validator"),
    ("jl-cc-intermediate", "长春市中级人民法院", "intermediate", "jl-high", "validator"),
    ("jl-cc-nanguan-basic", "南关区人民法院", "basic", "jl-cc-intermediate", "validator"),
    ("jl-cc-chaoyang-basic", "朝阳区人民法院", "basic", "jl-cc-intermediate", "observer"),
]

GENESIS = {
    "chain_id": "court-chain-test",
    "genesis_time_ms": 1_767_225_600_000,
    "courts": [
        {
            "id": cid,
            "name": name,
            "tier": tier,
            "parent": parent,
            "role": role,
            "public_key": f"{i + 1:064x}",
            "p2p_address": f"127.0.0.1:{7000 + i}",
            "rpc_address": f"127.0.0.1:{8000 + i}",
        }
        for i, (cid, name, tier, parent, role) in enumerate(_COURTS)
    ],
    "consensus": {"checkpoint_interval_blocks": 16, "watermark_window_blocks": 64},
}


@pytest.fixture
def genesis_dict() -> dict:
    """A fresh, valid genesis document each test may mutate."""
    return copy.deepcopy(GENESIS)


MINIMAL_TOML = """\
court_id = "jl-high"
data_dir = "data"
genesis_file = "genesis.json"
key_file = "node.key"
"""


@pytest.fixture
def write_config(tmp_path: Path):
    """Write config text (the minimal config plus ``extra``) and return its path."""

    def write(extra: str = "", base: str = MINIMAL_TOML) -> Path:
        path = tmp_path / "etc" / "config.toml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(base + extra, encoding="utf-8")
        return path

    return write


@pytest.fixture
def genesis_file(tmp_path: Path, genesis_dict: dict) -> Path:
    path = tmp_path / "genesis.json"
    path.write_text(json.dumps(genesis_dict, ensure_ascii=False), encoding="utf-8")
    return path
