"""config.toml: defaults, unknown keys, types, impossible values, paths, tokens."""

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from config import (
    ConfigError,
    Genesis,
    RpcToken,
    Settings,
    generate_token,
    listen_addresses,
    load_settings,
    render_settings,
    write_settings,
)
from config._schema import is_required
from config._toml_write import toml_string

SECTIONS = ["p2p", "consensus", "storage", "rpc", "metrics", "systemd"]


def _scalar_fields():
    """(section, field) for every scalar key of the schema, from the dataclasses."""
    for f in dataclasses.fields(Settings):
        if "section" in f.metadata:
            for g in dataclasses.fields(f.metadata["section"]):
                if "parse" in g.metadata:
                    yield f.name, g
        else:
            yield "", f


def _line(section: str, key: str, toml_value: str) -> str:
    return f"\n[{section}]\n{key} = {toml_value}\n" if section else f"{key} = {toml_value}\n"


def _load(write_config, extra: str) -> Settings:
    return load_settings(write_config(extra))


def _error(write_config, extra: str) -> str:
    path = write_config(extra)
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# The defaults as the design brief states them; the dataclasses must agree.
BRIEF_DEFAULTS = {
    "log_format": "auto",
    "log_level": "info",
    "p2p": dict(
        listen=None,
        tls=True,
        plaintext_ok=False,
        tls_cert_file=None,
        tls_key_file=None,
        frame_bytes_max=4_194_304,
        send_queue_frames_max=1024,
        heartbeat_interval_ms=1000,
        peer_dead_after_ms=5000,
        reconnect_backoff_min_ms=200,
        reconnect_backoff_max_ms=10000,
        gossip_fanout=3,
    ),
    "consensus": dict(
        batch_requests_max=1000,
        batch_bytes_max=1_048_576,
        batch_wait_ms=5,
        request_timeout_ms=2000,
        view_change_timeout_ms=4000,
        block_time_skew_max_ms=30000,
        pipeline_depth_max=8,
        partial_depth_max=1,
    ),
    "storage": dict(sync_writes=True, ballast_bytes=134_217_728, write_buffer_bytes=67_108_864),
    "rpc": dict(
        listen=None,
        body_bytes_max=16_777_216,
        batch_len_max=10000,
        rate_per_s_anonymous=20,
        rate_per_s_token=2000,
        request_timeout_ms=30000,
        connections_max=4096,
        connections_per_address_max=256,
        tokens=(),
    ),
    "metrics": dict(enabled=True),
    "systemd": dict(notify=True),
}


def test_minimal_config_takes_the_documented_defaults(write_config):
    settings = _load(write_config, "")
    assert settings.court_id == "jl-high"
    assert settings.log_format == BRIEF_DEFAULTS["log_format"]
    assert settings.log_level == BRIEF_DEFAULTS["log_level"]
    for section in SECTIONS:
        assert dataclasses.asdict(getattr(settings, section)) == BRIEF_DEFAULTS[section], section


def test_relative_paths_resolve_against_the_config_directory(write_config, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write_config()
    settings = load_settings(Path("..") / path.relative_to(tmp_path))
    etc = tmp_path / "etc"
    assert settings.data_dir.resolve() == etc / "data"
    assert settings.genesis_file.resolve() == etc / "genesis.json"
    assert settings.key_file.resolve() == etc / "node.key"
    assert settings.data_dir.is_absolute()


def test_absolute_paths_are_kept(write_config, tmp_path):
    base = 'court_id = "spc"\ndata_dir = "/var/lib/pbftd"\n'
    base += 'genesis_file = "/etc/pbftd/genesis.json"\nkey_file = "/etc/pbftd/node.key"\n'
    tls = '[p2p]\ntls_cert_file = "/etc/pbftd/tls.crt"\ntls_key_file = "tls.key"\n'
    settings = load_settings(write_config(tls, base=base))
    assert settings.data_dir == Path("/var/lib/pbftd")
    assert settings.key_file == Path("/etc/pbftd/node.key")
    assert settings.p2p.tls_cert_file == Path("/etc/pbftd/tls.crt")
    assert settings.p2p.tls_key_file == tmp_path / "etc" / "tls.key"


@pytest.mark.parametrize("key", ["court_id", "data_dir", "genesis_file", "key_file"])
def test_required_keys(write_config, key):
    base = "".join(
        line + "\n" for line in write_config().read_text().splitlines() if not line.startswith(key)
    )
    assert f"missing required key '{key}'" in _error(lambda extra: write_config(extra, base), "")


def test_unknown_top_level_key(write_config):
    message = _error(write_config, "colour = 1\n")
    assert message.endswith(": unknown key 'colour'")


def test_unknown_key_example_from_the_brief(write_config):
    path = write_config("\n[consensus]\nbatch_size = 10\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).startswith(f"{path}: [consensus] unknown key 'batch_size'")


@pytest.mark.parametrize("section", SECTIONS)
def test_unknown_key_in_each_section(write_config, section):
    assert f"[{section}] unknown key 'bogus_key'" in _error(
        write_config, f"\n[{section}]\nbogus_key = 1\n"
    )


def test_unknown_section_suggests_the_near_miss(write_config):
    assert "unknown key 'consensu'; did you mean 'consensus'?" in _error(
        write_config, "\n[consensu]\nbatch_wait_ms = 1\n"
    )


def test_section_must_be_a_table(write_config):
    assert "p2p: expected a table [p2p], got 5 (integer)" in _error(write_config, "p2p = 5\n")


INT_FIELDS = [(s, f) for s, f in _scalar_fields() if f.type is int]
BOOL_FIELDS = [(s, f) for s, f in _scalar_fields() if f.type is bool]


def test_schema_has_the_expected_number_of_int_and_bool_keys():
    # Guards the parametrized type tests below against silently testing nothing.
    assert len(INT_FIELDS) == 24
    assert len(BOOL_FIELDS) == 5


@pytest.mark.parametrize(("section", "f"), INT_FIELDS, ids=[f"{s}.{f.name}" for s, f in INT_FIELDS])
@pytest.mark.parametrize("bad", ["true", "false", "1.0", '"5"', "[]"])
def test_int_keys_refuse_bools_floats_strings(write_config, section, f, bad):
    message = _error(write_config, _line(section, f.name, bad))
    assert f"{f.name}: expected an integer from" in message


@pytest.mark.parametrize(("section", "f"), INT_FIELDS, ids=[f"{s}.{f.name}" for s, f in INT_FIELDS])
def test_int_keys_refuse_negative(write_config, section, f):
    assert f"{f.name}: expected an integer from" in _error(
        write_config, _line(section, f.name, "-1")
    )


@pytest.mark.parametrize(
    ("section", "f"), BOOL_FIELDS, ids=[f"{s}.{f.name}" for s, f in BOOL_FIELDS]
)
@pytest.mark.parametrize("bad", ["1", "0", '"true"'])
def test_bool_keys_refuse_ints_and_strings(write_config, section, f, bad):
    assert f"{f.name}: expected true or false" in _error(write_config, _line(section, f.name, bad))


IMPOSSIBLE = [
    ("[consensus]\nbatch_requests_max = 0", "[consensus] batch_requests_max: expected an integer"),
    ("[consensus]\nrequest_timeout_ms = 0", "[consensus] request_timeout_ms: expected"),
    ("[p2p]\ngossip_fanout = 0", "[p2p] gossip_fanout: expected an integer from 1"),
    ("[rpc]\nbatch_len_max = 0", "[rpc] batch_len_max: expected an integer from 1"),
    ("[storage]\nwrite_buffer_bytes = 1024", "[storage] write_buffer_bytes: expected"),
    ("[p2p]\nframe_bytes_max = 99_999_999_999", "[p2p] frame_bytes_max: expected"),
    ('[p2p]\nlisten = "0.0.0.0:70000"', "[p2p] listen: expected 'host:port', got '0.0.0.0:70000'"),
    ('[p2p]\nlisten = "0.0.0.0"', "[p2p] listen: expected 'host:port'"),
    ("[rpc]\nlisten = 8080", "[rpc] listen: expected a 'host:port' string, got 8080"),
    (
        "[rpc]\nconnections_max = 100\nconnections_per_address_max = 200",
        "[rpc] connections_per_address_max: must not exceed connections_max (100), got 200",
    ),
    (
        "[p2p]\nreconnect_backoff_min_ms = 20000",
        "[p2p] reconnect_backoff_min_ms: must not exceed reconnect_backoff_max_ms (10000)",
    ),
    (
        "[p2p]\nheartbeat_interval_ms = 5000",
        "[p2p] peer_dead_after_ms: must be greater than heartbeat_interval_ms (5000)",
    ),
    ("[p2p]\ntls = false", "[p2p] tls: false sends consensus traffic unencrypted"),
    ('[p2p]\ntls_cert_file = "c.pem"', "[p2p] tls_cert_file: tls_cert_file and tls_key_file"),
    ('[p2p]\ntls_key_file = ""', "[p2p] tls_key_file: expected a non-empty path"),
    (
        "[consensus]\nbatch_bytes_max = 4_194_304",
        "[consensus] batch_bytes_max: must be below [p2p]",
    ),
    ("[consensus]\nbatch_wait_ms = 2000", "[consensus] batch_wait_ms: must be below request_time"),
    (
        '[p2p]\nlisten = "127.0.0.1:7000"\n[rpc]\nlisten = "127.0.0.1:7000"',
        "[rpc] listen: '127.0.0.1:7000' is also [p2p] listen",
    ),
    ('log_level = "verbose"', "log_level: must be one of debug, info, warning, error"),
    ('log_format = "xml"', "log_format: must be one of json, console, auto, got 'xml'"),
]


@pytest.mark.parametrize(("extra", "expected"), IMPOSSIBLE, ids=[e for _, e in IMPOSSIBLE])
def test_impossible_values_are_refused_naming_the_key(write_config, extra, expected):
    assert expected in _error(write_config, "\n" + extra + "\n")


def test_bad_court_id(write_config):
    base = write_config().read_text().replace('"jl-high"', '"JL High"')
    assert "court_id: expected a court id" in _error(lambda e: write_config(e, base), "")


def test_plaintext_needs_explicit_consent(write_config):
    settings = _load(write_config, "\n[p2p]\ntls = false\nplaintext_ok = true\n")
    assert settings.p2p.tls is False


def test_zero_is_fine_where_it_means_none(write_config):
    settings = _load(
        write_config, "\n[consensus]\nbatch_wait_ms = 0\n[storage]\nballast_bytes = 0\n"
    )
    assert (settings.consensus.batch_wait_ms, settings.storage.ballast_bytes) == (0, 0)


def test_invalid_toml_names_the_file(write_config):
    assert "invalid TOML" in _error(write_config, "court_id = \n")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path}/nope.toml: cannot read")):
        load_settings(tmp_path / "nope.toml")


# --- tokens -----------------------------------------------------------------

SHA = "ab" * 32


def _token(name="trial-system", sha256=SHA, scopes='["evidence:write"]') -> str:
    return f'\n[[rpc.tokens]]\nname = "{name}"\nsha256 = "{sha256}"\nscopes = {scopes}\n'


def test_tokens_load_as_hashes_with_scopes(write_config):
    token, digest = generate_token()
    settings = _load(
        write_config,
        _token(sha256=digest, scopes='["evidence:write", "case:read"]')
        + _token(name="bank", sha256=SHA, scopes='["agency:icbc-jl"]'),
    )
    assert settings.rpc.tokens == (
        RpcToken("trial-system", digest, ("evidence:write", "case:read")),
        RpcToken("bank", SHA, ("agency:icbc-jl",)),
    )
    assert settings.rpc.token_for(token) == settings.rpc.tokens[0]
    assert settings.rpc.token_for(token + "x") is None
    assert settings.rpc.token_for(digest) is None  # the hash itself is not a credential


TOKEN_REJECTED = [
    (_token(sha256="AB" * 32), "[rpc.tokens[0]] sha256: expected 64 lowercase hex"),
    (_token(sha256="ab" * 31), "[rpc.tokens[0]] sha256: expected 64 lowercase hex"),
    (_token(scopes='["evidence:delete"]'), "[rpc.tokens[0]] scopes: unknown scope 'evidence:del"),
    (_token(scopes='["agency:"]'), "unknown scope 'agency:'"),
    (_token(scopes='["agency:ICBC"]'), "unknown scope 'agency:ICBC'"),
    (_token(scopes="[]"), "[rpc.tokens[0]] scopes: expected an array of 1 to"),
    (_token(scopes='"admin"'), "[rpc.tokens[0]] scopes: expected an array"),
    (_token(scopes='["admin", "admin"]'), "a scope is listed twice"),
    (_token(name=""), "[rpc.tokens[0]] name: expected a non-empty string"),
    (_token() + "\ncolour = 1\n", "[rpc.tokens[0]] unknown key 'colour'"),
    ('\n[[rpc.tokens]]\nname = "x"\nscopes = ["admin"]\n', "missing required key 'sha256'"),
    (_token() + _token(sha256="cd" * 32), "[rpc] tokens[1].name: 'trial-system' is used by"),
    (_token() + _token(name="other"), "[rpc] tokens[1].sha256: "),
    ("\n[rpc]\ntokens = 3\n", "[rpc] tokens: expected at most 1000 [[rpc.tokens]] tables"),
]


@pytest.mark.parametrize(("extra", "expected"), TOKEN_REJECTED, ids=[e for _, e in TOKEN_REJECTED])
def test_bad_tokens_are_refused(write_config, extra, expected):
    assert expected in _error(write_config, extra)


# --- writing ----------------------------------------------------------------


def test_render_round_trips_every_value(tmp_path):
    settings = Settings(
        court_id="jl-cc-intermediate",
        data_dir=tmp_path / "data",
        genesis_file=Path("/etc/pbftd/genesis.json"),
        key_file=tmp_path / "keys" / 'odd "name" \\ 法院.key',
        log_format="json",
    )
    settings = dataclasses.replace(
        settings,
        p2p=dataclasses.replace(settings.p2p, listen="[::1]:7000", tls=False, plaintext_ok=True),
        rpc=dataclasses.replace(
            settings.rpc,
            tokens=(RpcToken('银行 "ICBC" \\', SHA, ("agency:icbc", "evidence:read")),),
        ),
        storage=dataclasses.replace(settings.storage, ballast_bytes=0),
    )
    text = render_settings(settings, base_dir=tmp_path)
    assert 'data_dir = "data"' in text
    assert 'genesis_file = "/etc/pbftd/genesis.json"' in text
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    assert load_settings(path) == settings


def test_render_refuses_invalid_settings(tmp_path):
    bad = Settings(court_id="x", data_dir=tmp_path, genesis_file=tmp_path, key_file=tmp_path)
    bad = dataclasses.replace(bad, p2p=dataclasses.replace(bad.p2p, gossip_fanout=0))
    with pytest.raises(ConfigError, match=r"\[p2p\] gossip_fanout"):
        render_settings(bad)


def test_render_documents_every_key(tmp_path):
    settings = Settings(court_id="x", data_dir=tmp_path, genesis_file=tmp_path, key_file=tmp_path)
    text = render_settings(settings)
    for _section, f in _scalar_fields():
        assert re.search(rf"^#? ?{f.name} =", text, re.M), f.name
    assert tomllib.loads(text)["consensus"]["batch_wait_ms"] == 5
    assert sum(is_required(f) for _, f in _scalar_fields()) == 4


def test_write_settings_uses_paths_relative_to_the_file_and_never_overwrites(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        court_id="spc",
        data_dir=Path("node/data"),
        genesis_file=Path("genesis.json"),
        key_file=Path("node/node.key"),
    )
    (tmp_path / "node").mkdir()
    path = Path("node/config.toml")
    write_settings(path, settings)
    text = path.read_text(encoding="utf-8")
    assert 'data_dir = "data"' in text
    assert 'genesis_file = "/' in text  # outside the config's directory: absolute
    loaded = load_settings(tmp_path / "node" / "config.toml")
    assert loaded.data_dir == tmp_path / "node" / "data"
    assert loaded.genesis_file == tmp_path / "genesis.json"
    with pytest.raises(ConfigError, match="refusing to overwrite"):
        write_settings(path, settings)
    write_settings(path, settings, overwrite=True)


def test_listen_addresses_fall_back_to_genesis(write_config, genesis_dict):
    genesis = Genesis.from_dict(genesis_dict)
    assert listen_addresses(_load(write_config, ""), genesis) == (
        "127.0.0.1:7001",
        "127.0.0.1:8001",
    )
    override = _load(write_config, '\n[p2p]\nlisten = "0.0.0.0:7777"\n')
    assert listen_addresses(override, genesis) == ("0.0.0.0:7777", "127.0.0.1:8001")


def test_listen_addresses_refuse_a_court_not_in_genesis(write_config, genesis_dict):
    genesis_dict["courts"][1]["id"] = "jl-high-2"
    genesis_dict["courts"][2]["parent"] = "jl-high-2"
    genesis = Genesis.from_dict(genesis_dict)
    with pytest.raises(ConfigError, match="court_id: 'jl-high' is not a court in genesis"):
        listen_addresses(_load(write_config, ""), genesis)


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"])))
def test_toml_string_round_trips_any_text(text):
    assert tomllib.loads(f"k = {toml_string(text)}")["k"] == text
