"""pbftd configuration: the genesis file, each daemon's config.toml, key and
token files, example configs per court tier and the systemd unit.

Everything here fails with ConfigError, a one-line message naming the file and
key, because every failure here is an operator's mistake to fix, not a bug.
"""

from config.errors import ConfigError
from config.genesis import (
    ROLES,
    TIERS,
    ConsensusParams,
    Court,
    Genesis,
    WorkflowParams,
    canonical_json,
    load_genesis,
)
from config.keys import (
    generate_key_file,
    generate_token,
    load_private_key,
    public_key_from_hex,
    public_key_hex,
    token_sha256,
)
from config.secret_files import check_secret_file, read_secret_file, write_secret_file
from config.settings import (
    LOG_FORMATS,
    LOG_LEVELS,
    SCOPES,
    ConsensusSettings,
    MetricsSettings,
    P2PSettings,
    RpcSettings,
    RpcToken,
    Settings,
    StorageSettings,
    SystemdSettings,
    is_scope,
    listen_addresses,
    load_settings,
    render_settings,
    settings_from_dict,
    write_settings,
)

__all__ = [
    "LOG_FORMATS",
    "LOG_LEVELS",
    "ROLES",
    "SCOPES",
    "TIERS",
    "ConfigError",
    "ConsensusParams",
    "ConsensusSettings",
    "Court",
    "Genesis",
    "MetricsSettings",
    "P2PSettings",
    "RpcSettings",
    "RpcToken",
    "Settings",
    "StorageSettings",
    "SystemdSettings",
    "WorkflowParams",
    "canonical_json",
    "check_secret_file",
    "generate_key_file",
    "generate_token",
    "is_scope",
    "listen_addresses",
    "load_genesis",
    "load_private_key",
    "load_settings",
    "public_key_from_hex",
    "public_key_hex",
    "read_secret_file",
    "render_settings",
    "settings_from_dict",
    "token_sha256",
    "write_secret_file",
    "write_settings",
]
