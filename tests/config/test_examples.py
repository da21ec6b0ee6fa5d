"""The example configs in config/examples stay valid and complete.

"Complete" is checked against the schema itself, so a key added to Settings
without being documented in every example fails here.
"""

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

import config
from config import TIERS, Settings, listen_addresses, load_genesis, load_settings, render_settings

EXAMPLES = Path(config.__file__).parent / "examples"
TIER_FILES = [EXAMPLES / f"{tier}.toml" for tier in TIERS]
_ASSIGN = re.compile(r"^#?\s*([a-z_][a-z0-9_]*)\s*=")
_HEADER = re.compile(r"^\[\[?([a-z0-9_.]+)\]\]?\s*$")


def _schema_keys(cls=Settings, table: str = "") -> dict[str, set[str]]:
    """Every table of the schema ('' is the top level) and the keys it may hold."""
    keys: dict[str, set[str]] = {table: set()}
    for f in dataclasses.fields(cls):
        child = f"{table}.{f.name}" if table else f.name
        if "section" in f.metadata:
            keys |= _schema_keys(f.metadata["section"], child)
        elif "items" in f.metadata:
            keys |= _schema_keys(f.metadata["items"], child)
        else:
            keys[table].add(f.name)
    return keys


def _mentioned_keys(text: str) -> dict[str, dict[str, list[str]]]:
    """table -> key -> the comment lines just above it (set or commented out)."""
    found: dict[str, dict[str, list[str]]] = {}
    table, comments = "", []
    for line in text.splitlines():
        header, assign = _HEADER.match(line), _ASSIGN.match(line)
        if header:
            table, comments = header.group(1), []
        elif assign:
            found.setdefault(table, {}).setdefault(assign.group(1), list(comments))
            if not line.startswith("#"):
                comments = []
        elif line.startswith("#"):
            comments.append(line)
    return found


def test_there_is_one_example_per_tier():
    assert sorted(p.name for p in EXAMPLES.glob("*.toml")) == sorted(p.name for p in TIER_FILES)


@pytest.mark.parametrize("path", TIER_FILES, ids=TIERS)
def test_example_loads_and_belongs_to_its_tier(path):
    settings = load_settings(path)
    genesis = load_genesis(EXAMPLES / "genesis.example.json")
    court = genesis.court(settings.court_id)
    assert court.tier == path.stem
    assert listen_addresses(settings, genesis) == (court.p2p_address, court.rpc_address)
    assert settings.rpc.tokens, "each example shows at least one token"
    assert any("admin" in t.scopes for t in settings.rpc.tokens)


@pytest.mark.parametrize("path", TIER_FILES, ids=TIERS)
def test_example_mentions_every_key_with_its_default(path):
    text = path.read_text(encoding="utf-8")
    mentioned = _mentioned_keys(text)
    for table, keys in _schema_keys().items():
        missing = keys - set(mentioned.get(table, {}))
        assert not missing, f"{path.name} [{table}] lacks {sorted(missing)}"
        if table == "rpc.tokens":
            continue  # documented once, in the comment block above [[rpc.tokens]]
        for key in keys:
            doc = " ".join(mentioned[table][key]).lower()
            assert "default" in doc or "required" in doc, f"{path.name} [{table}] {key}: {doc!r}"


@pytest.mark.parametrize("path", TIER_FILES, ids=TIERS)
def test_example_sets_every_key_that_has_a_value(path):
    """Keys whose default is a value appear set, not only commented out."""
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    for f in dataclasses.fields(Settings):
        if "section" not in f.metadata:
            assert f.name in data, f.name
            continue
        for g in dataclasses.fields(f.metadata["section"]):
            if g.default is not None:
                assert g.name in data[f.name], f"[{f.name}] {g.name}"


@pytest.mark.parametrize("path", TIER_FILES, ids=TIERS)
def test_example_survives_render_and_reload(path, tmp_path):
    settings = load_settings(path)
    out = tmp_path / "config.toml"
    out.write_text(render_settings(settings), encoding="utf-8")
    assert load_settings(out) == settings


def test_genesis_example_is_a_four_tier_chain_with_one_fault_tolerated():
    genesis = load_genesis(EXAMPLES / "genesis.example.json")
    assert {c.tier for c in genesis.courts} == set(TIERS)
    assert len(genesis.validators()) == 4
    assert (genesis.f, genesis.quorum) == (1, 3)
    assert genesis.observers(), "the example shows an observer court"


def test_the_completeness_check_notices_a_missing_key():
    text = (EXAMPLES / "basic.toml").read_text(encoding="utf-8")
    damaged = re.sub(r"(?m)^gossip_fanout = .*$", "", text)
    assert "gossip_fanout" not in _mentioned_keys(damaged)["p2p"]
    assert "gossip_fanout" in _mentioned_keys(text)["p2p"]
