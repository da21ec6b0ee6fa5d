"""``pbftd init`` and ``pbftd genesis``: files for real courts.

Each court creates its own key and config on its own machine and publishes
only ``court.json`` (id, name, tier, parent, role, public key, addresses);
the consortium assembles the genesis from those public files, so no private
key ever leaves the court that made it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from config import Genesis, generate_key_file, generate_token, public_key_hex
from config.secret_files import write_secret_file

__all__ = ["assemble_genesis", "init_court"]


def init_court(court_id: str, name: str, tier: str, parent: str | None, directory: Path,
               p2p_address: str, rpc_address: str, role: str = "validator") -> list[str]:
    if directory.exists() and any(directory.iterdir()):
        raise FileExistsError(f"{directory} exists and is not empty")
    directory.mkdir(parents=True, exist_ok=True)
    key = generate_key_file(directory / "node.key")
    token, token_hash = generate_token()
    write_secret_file(directory / "admin.token", (token + "\n").encode())
    court = {"id": court_id, "name": name, "tier": tier, "parent": parent, "role": role,
             "public_key": public_key_hex(key), "p2p_address": p2p_address,
             "rpc_address": rpc_address}
    (directory / "court.json").write_text(json.dumps(court, ensure_ascii=False, indent=2) + "\n")
    (directory / "config.toml").write_text(f"""# pbftd node of {name} ({court_id}).
# Every key and its default: config/examples/{tier}.toml
court_id = "{court_id}"
data_dir = "data"
genesis_file = "genesis.json"    # copy the consortium's genesis.json here
key_file = "node.key"

[[rpc.tokens]]
name = "admin"
sha256 = "{token_hash}"
scopes = ["admin"]
""")
    return [f"key      {directory / 'node.key'} (mode 0600, never share it)",
            f"token    {directory / 'admin.token'} (bearer token with every scope)",
            f"config   {directory / 'config.toml'}",
            f"public   {directory / 'court.json'} (send this to the genesis assembler)"]


def assemble_genesis(dirs: list[Path], out: Path, chain_id: str) -> Path:
    courts = []
    for d in dirs:
        path = d / "court.json" if d.is_dir() else d
        courts.append(json.loads(path.read_text()))
    if out.exists():
        raise FileExistsError(f"{out} exists; refusing to overwrite a genesis")
    genesis = Genesis.from_dict({"chain_id": chain_id, "genesis_time_ms": int(time.time() * 1000),
                                 "courts": courts}, source=str(out))
    out.write_text(json.dumps(genesis.to_dict(), ensure_ascii=False, indent=2) + "\n")
    return out
