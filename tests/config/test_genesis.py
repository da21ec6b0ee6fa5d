"""The genesis file: each validation rule, the court tree helpers and the hash."""

import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import ConfigError, Genesis, canonical_json, load_genesis


def _error(data: object) -> str:
    with pytest.raises(ConfigError) as info:
        Genesis.from_dict(data, "genesis.json")
    return str(info.value)


def test_valid_genesis_loads_with_courts_in_file_order(genesis_dict):
    genesis = Genesis.from_dict(genesis_dict)
    assert [c.id for c in genesis.courts] == [c["id"] for c in genesis_dict["courts"]]
    assert [c.id for c in genesis.validators()] == [
        "spc",
        "jl-high",
        "jl-cc-intermediate",
        "jl-cc-nanguan-basic",
    ]
    assert [c.id for c in genesis.observers()] == ["jl-cc-chaoyang-basic"]
    assert genesis.court("jl-high").name == "吉林省高级人民法院"


def test_tier_error_names_file_key_path_choices_and_value(genesis_dict):
    genesis_dict["courts"][2]["tier"] = "county"
    assert _error(genesis_dict) == (
        "genesis.json: courts[2].tier: must be one of supreme, high, intermediate, basic, "
        "got 'county'"
    )


def _set(path: str, value: object):
    """A mutation that sets ``courts[1].role``-style paths in a genesis dict."""

    def mutate(doc: dict) -> None:
        target = doc
        parts = re.findall(r"[a-z0-9_]+|\[\d+\]", path)
        for part in parts[:-1]:
            target = target[int(part[1:-1])] if part.startswith("[") else target[part]
        last = parts[-1]
        target[int(last[1:-1]) if last.startswith("[") else last] = value

    return mutate


def _delete(index: int, key: str):
    return lambda doc: doc["courts"][index].pop(key)


def _copy_field(src: int, dst: int, key: str):
    def mutate(doc: dict) -> None:
        doc["courts"][dst][key] = doc["courts"][src][key]

    return mutate


def _lower_tier_parent(doc: dict) -> None:
    doc["courts"][4]["parent"] = "spc"  # skipping tiers is fine, and avoids a cycle
    doc["courts"][1]["parent"] = "jl-cc-chaoyang-basic"


def _all_observers(doc: dict) -> None:
    for court in doc["courts"]:
        court["role"] = "observer"


REJECTED = [
    # top level
    (lambda d: d.update(extra=1), "(top level): unknown key 'extra'"),
    (lambda d: d.pop("chain_id"), "(top level): missing required key 'chain_id'"),
    (_set("chain_id", "Court-Chain"), "chain_id: expected 1-64 characters [a-z0-9-]"),
    (_set("chain_id", ""), "chain_id: expected"),
    (_set("chain_id", "a" * 65), "chain_id: expected"),
    (_set("chain_id", 7), "chain_id: expected"),
    (_set("genesis_time_ms", True), "genesis_time_ms: expected an integer"),
    (_set("genesis_time_ms", -1), "genesis_time_ms: expected an integer from 0"),
    (_set("genesis_time_ms", 1.5), "genesis_time_ms: expected an integer"),
    (_set("genesis_time_ms", "1767225600000"), "genesis_time_ms: expected an integer"),
    (_set("courts", []), "courts: expected an array of 1 to"),
    (_set("courts", {}), "courts: expected an array"),
    # a court's own fields
    (_set("courts[1].colour", "red"), "courts[1]: unknown key 'colour'"),
    (_delete(1, "parent"), "courts[1]: missing required key 'parent'"),
    (_set("courts[1]", "jl-high"), "courts[1]: expected an object"),
    (_set("courts[1].id", "JL-High"), "courts[1].id: expected a court id"),
    (_set("courts[1].id", "-jl"), "courts[1].id: expected a court id"),
    (_set("courts[1].id", "j" * 65), "courts[1].id: expected a court id"),
    (_set("courts[1].name", ""), "courts[1].name: expected a non-empty string"),
    (_set("courts[1].name", "   "), "courts[1].name: expected a non-empty string"),
    (_set("courts[1].name", "吉林\n高院"), "courts[1].name: must not contain control"),
    (_set("courts[1].name", 5), "courts[1].name: expected a non-empty string"),
    (_set("courts[1].role", "leader"), "courts[1].role: must be one of validator, observer"),
    (_set("courts[1].public_key", "ab" * 31), "courts[1].public_key: expected 64 lowercase hex"),
    (_set("courts[1].public_key", "AB" * 32), "courts[1].public_key: expected 64 lowercase hex"),
    (_set("courts[1].public_key", "zz" * 32), "courts[1].public_key: expected 64 lowercase hex"),
    (_set("courts[1].p2p_address", "127.0.0.1"), "courts[1].p2p_address: expected 'host:port'"),
    (_set("courts[1].p2p_address", "127.0.0.1:0"), "port must be a number from 1 to 65535"),
    (_set("courts[1].p2p_address", "h:65536"), "port must be a number from 1 to 65535"),
    (_set("courts[1].p2p_address", "::1:7000"), "IPv6 host must be written in brackets"),
    (_set("courts[1].p2p_address", "[zz]:7000"), "is not an IPv6 address"),
    (_set("courts[1].rpc_address", "bad host:80"), "courts[1].rpc_address: expected 'host:port'"),
    (_set("courts[1].rpc_address", None), "courts[1].rpc_address: expected a 'host:port'"),
    # across courts
    (_copy_field(0, 3, "id"), "courts[3].id: 'spc' is already used by courts[0]"),
    (_copy_field(1, 4, "public_key"), "courts[4].public_key: '"),
    (_copy_field(2, 3, "p2p_address"), "courts[3].p2p_address: '127.0.0.1:7002' is already"),
    (_set("courts[1].parent", "shanghai-high"), "courts[1].parent: no court with id"),
    (_set("courts[1].parent", None), "courts[1].parent: only a supreme court may have no parent"),
    (_set("courts[4].parent", "jl-cc-nanguan-basic"), "courts[4].parent: parent 'jl-cc-nanguan"),
    (_lower_tier_parent, "courts[1].parent: parent 'jl-cc-chaoyang-basic' is basic, not a higher"),
    (_set("courts[0].parent", "jl-high"), "courts[0].parent: cycle: spc -> jl-high -> spc"),
    (_set("courts[1].parent", "jl-high"), "courts[1].parent: cycle: jl-high -> jl-high"),
    (_all_observers, "courts: at least one court must have role 'validator'"),
    # consensus parameters
    (_set("consensus.batch", 5), "consensus: unknown key 'batch'"),
    (_set("consensus", []), "consensus: expected an object"),
    (_set("consensus.checkpoint_interval_blocks", 0), "consensus.checkpoint_interval_blocks"),
    (_set("consensus.checkpoint_interval_blocks", True), "expected an integer"),
    (_set("consensus.watermark_window_blocks", 31), "must be at least twice"),
    # workflow parameters
    (_set("workflows", {"warn_days": [30]}), "workflows: unknown key 'warn_days'"),
    (_set("workflows", {"warn_lead_days": 30}), "workflows.warn_lead_days: expected an array"),
    (_set("workflows", {"warn_lead_days": [30, 0]}), "workflows.warn_lead_days[1]"),
    (_set("workflows", {"warn_lead_days": [7, 7]}), "a lead time is listed twice"),
    (_set("workflows", {"reminder_days": -1}), "workflows.reminder_days"),
    (_set("workflows", {"deadlines_per_block": 0}), "workflows.deadlines_per_block"),
]


@pytest.mark.parametrize(("mutate", "expected"), REJECTED, ids=[e for _, e in REJECTED])
def test_each_rule_rejects_with_file_and_key_path(genesis_dict, mutate, expected):
    mutate(genesis_dict)
    message = _error(genesis_dict)
    assert message.startswith("genesis.json: "), message
    assert expected in message


def test_cycle_above_a_court_is_reported_at_a_court_on_the_cycle(genesis_dict):
    # basic -> intermediate -> high -> intermediate: the first court whose own
    # parent chain returns to it (jl-high, courts[1]) is named.
    genesis_dict["courts"][1]["parent"] = "jl-cc-intermediate"
    assert "courts[1].parent: cycle: jl-high -> jl-cc-intermediate -> jl-high" in _error(
        genesis_dict
    )


def test_parent_may_skip_tiers(genesis_dict):
    genesis_dict["courts"][4]["parent"] = "spc"
    genesis = Genesis.from_dict(genesis_dict)
    assert [c.id for c in genesis.ancestors("jl-cc-chaoyang-basic")] == ["spc"]


def test_single_validator_is_allowed_and_tolerates_no_fault(genesis_dict):
    genesis_dict["courts"] = genesis_dict["courts"][:1]
    genesis = Genesis.from_dict(genesis_dict)
    assert (len(genesis.validators()), genesis.f, genesis.quorum) == (1, 0, 1)


@pytest.mark.parametrize(
    ("n", "f", "quorum"), [(1, 0, 1), (3, 0, 2), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5)]
)
def test_f_and_quorum_follow_validator_count(genesis_dict, n, f, quorum):
    spc = genesis_dict["courts"][0]
    extra = [
        {
            **genesis_dict["courts"][1],
            "id": f"p{i}-high",
            "public_key": f"{100 + i:064x}",
            "p2p_address": f"127.0.0.1:{9000 + i}",
        }
        for i in range(n - 1)
    ]
    genesis_dict["courts"] = [spc, *extra]
    genesis = Genesis.from_dict(genesis_dict)
    assert (genesis.f, genesis.quorum) == (f, quorum)
    # Two quorums intersect in at least f + 1 validators: one is honest.
    assert 2 * quorum - n >= f + 1


def test_consensus_section_is_optional_and_defaults(genesis_dict):
    del genesis_dict["consensus"]
    genesis = Genesis.from_dict(genesis_dict)
    assert genesis.consensus.checkpoint_interval_blocks == 16
    assert genesis.consensus.watermark_window_blocks == 64


def test_ancestors_walk_to_the_supreme_court(genesis_dict):
    genesis = Genesis.from_dict(genesis_dict)
    chain = [c.id for c in genesis.ancestors("jl-cc-nanguan-basic")]
    assert chain == ["jl-cc-intermediate", "jl-high", "spc"]
    assert genesis.ancestors("spc") == []


def test_is_supervisor(genesis_dict):
    genesis = Genesis.from_dict(genesis_dict)
    assert genesis.is_supervisor("jl-cc-nanguan-basic", "jl-cc-nanguan-basic")
    assert genesis.is_supervisor("jl-high", "jl-cc-nanguan-basic")
    assert genesis.is_supervisor("spc", "jl-cc-chaoyang-basic")
    assert not genesis.is_supervisor("jl-cc-nanguan-basic", "jl-cc-intermediate")
    assert not genesis.is_supervisor("jl-cc-chaoyang-basic", "jl-cc-nanguan-basic")
    with pytest.raises(KeyError):
        genesis.is_supervisor("nowhere", "jl-high")
    with pytest.raises(KeyError):
        genesis.court("nowhere")


def test_hash_is_sha256_of_canonical_json(genesis_dict):
    genesis = Genesis.from_dict(genesis_dict)
    expected = json.dumps(
        genesis_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert genesis.canonical_json() == expected
    assert genesis.genesis_hash() == hashlib.sha256(expected).digest()
    assert genesis.genesis_hash_hex() == hashlib.sha256(expected).hexdigest()
    assert "最高人民法院".encode() in genesis.canonical_json()


def test_hash_ignores_formatting_and_omitted_defaults_but_not_values(genesis_dict):
    base = Genesis.from_dict(genesis_dict).genesis_hash()
    reordered = dict(reversed(list(genesis_dict.items())))
    del reordered["consensus"]
    assert Genesis.from_dict(reordered).genesis_hash() == base
    genesis_dict["courts"][3]["name"] = "南关区法院"
    assert Genesis.from_dict(genesis_dict).genesis_hash() != base


def test_load_genesis_reads_utf8_file(genesis_file, genesis_dict):
    assert load_genesis(genesis_file) == Genesis.from_dict(genesis_dict)


def test_load_genesis_names_the_file_in_errors(tmp_path, genesis_dict):
    genesis_dict["courts"][2]["tier"] = "county"
    path = tmp_path / "g.json"
    path.write_text(json.dumps(genesis_dict), encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: courts[2].tier: must be one of")):
        load_genesis(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{", "invalid JSON"),
        ('{"chain_id": "a", "chain_id": "b"}', "duplicate key 'chain_id'"),
        ('{"genesis_time_ms": NaN}', "NaN is not allowed"),
        ("[]", "(top level): expected an object"),
    ],
)
def test_load_genesis_rejects_bad_json(tmp_path, text, expected):
    path = tmp_path / "genesis.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_genesis(path)


def test_load_genesis_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read genesis file"):
        load_genesis(tmp_path / "absent.json")


def test_canonical_json_is_compact_sorted_utf8():
    assert canonical_json({"b": 1, "a": "法"}) == '{"a":"法","b":1}'.encode()


@st.composite
def court_trees(draw):
    """Random valid court trees: each court's parent is an earlier, higher-tier court."""
    tiers = ["supreme", "high", "intermediate", "basic"]
    courts = [("c0", "supreme", None)]
    for i in range(1, draw(st.integers(1, 25))):
        tier_index = draw(st.integers(1, 3))
        higher = [c for c in courts if tiers.index(c[1]) < tier_index]
        parent = draw(st.sampled_from(higher))[0]
        courts.append((f"c{i}", tiers[tier_index], parent))
    roles = draw(st.lists(st.booleans(), min_size=len(courts), max_size=len(courts)))
    roles[0] = True
    return [
        {
            "id": cid,
            "name": f"法院 {cid}",
            "tier": tier,
            "parent": parent,
            "role": "validator" if is_validator else "observer",
            "public_key": f"{i:064x}",
            "p2p_address": f"node{i}.example:7000",
            "rpc_address": f"node{i}.example:8080",
        }
        for i, ((cid, tier, parent), is_validator) in enumerate(zip(courts, roles, strict=True))
    ]


@given(court_trees())
def test_random_valid_trees_round_trip_and_supervision_matches_parents(courts):
    doc = {"chain_id": "prop", "genesis_time_ms": 0, "courts": courts}
    genesis = Genesis.from_dict(doc)
    assert Genesis.from_dict(genesis.to_dict()) == genesis
    assert Genesis.from_dict(genesis.to_dict()).genesis_hash() == genesis.genesis_hash()
    parents = {c["id"]: c["parent"] for c in courts}
    for court in courts:
        chain = [c.id for c in genesis.ancestors(court["id"])]
        assert chain == [] or chain[-1] == "c0"
        if court["parent"] is not None:
            assert chain[0] == court["parent"]
        for other in parents:
            expected = other == court["id"] or other in chain
            assert genesis.is_supervisor(other, court["id"]) is expected


@pytest.mark.parametrize("n", range(1, 32))
def test_genesis_quorum_is_the_consensus_quorum(genesis_dict, n):
    """One rule for quorum sizes: genesis and the consensus core must agree."""
    from pbftd.core.validators import ValidatorSet

    spc = genesis_dict["courts"][0]
    extra = [{**genesis_dict["courts"][1], "id": f"p{i}-high", "public_key": f"{100 + i:064x}",
              "p2p_address": f"127.0.0.1:{9000 + i}"} for i in range(n - 1)]
    genesis_dict["courts"] = [spc, *extra]
    genesis = Genesis.from_dict(genesis_dict)
    vals = ValidatorSet.of([(c.id, bytes.fromhex(c.public_key)) for c in genesis.validators()])
    assert genesis.quorum == vals.quorum


def test_workflows_section_is_optional_defaults_and_is_hashed_only_when_changed(genesis_dict):
    plain = Genesis.from_dict(genesis_dict)
    assert plain.workflows.warn_lead_days == (30, 7)
    assert (plain.workflows.reminder_days, plain.workflows.deadlines_per_block) == (3, 1000)
    assert "workflows" not in plain.to_dict()
    spelled = Genesis.from_dict({**genesis_dict, "workflows": {"warn_lead_days": [7, 30]}})
    assert spelled.genesis_hash() == plain.genesis_hash()
    changed = Genesis.from_dict({**genesis_dict, "workflows": {"warn_lead_days": [14]}})
    assert changed.genesis_hash() != plain.genesis_hash()
    assert Genesis.from_dict(changed.to_dict()) == changed
