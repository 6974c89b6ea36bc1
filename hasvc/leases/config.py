"""Settings for the lease sync between the two nodes.

YAML (read by the daemon's config loader, which builds a SyncConfig):

    lease_sync:
      listen: 198.51.100.11      # this node's own address (not the CARP VIP)
      peer: 198.51.100.12        # the other node's own address
      port: 6470                 # TCP port, the same on both nodes
      key_file: /usr/local/etc/hasvc/lease-sync.key   # shared secret, mode 0600
      state_dir: /var/db/hasvc/leases                 # optional, this is the default
      files:
        - {name: dhcpd4, path: /var/db/dhcpd/dhcpd.leases, family: 4}
        - {name: dhcpd6, path: /var/db/dhcpd6/dhcpd6.leases, family: 6}

Required: listen, peer, key_file. Optional: port (6470), state_dir,
files (default none), node. `listen` and `peer` may also be written
"ADDRESS:PORT" ("[V6ADDR]:PORT"), which overrides `port`. `node` (this
node's id in messages) defaults to the node name the daemon already has.
sync_config_from_dict() turns the mapping into a SyncConfig.

`name` must be the same on both nodes for the same service: it is how a
message says which lease file it is about, and names the peer's copy under
state_dir (<state_dir>/<name>.leases).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_PORT = 6470
DEFAULT_STATE_DIR = "/var/db/hasvc/leases"


@dataclass(frozen=True)
class LeaseFileConfig:
    name: str
    path: str
    family: int  # 4 or 6

    def __post_init__(self) -> None:
        if self.family not in (4, 6):
            raise ValueError(f"lease file {self.name!r}: family must be 4 or 6, not {self.family!r}")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.name):
            raise ValueError(f"lease file name {self.name!r}: use letters, digits, '.', '_', '-'")


@dataclass
class SyncConfig:
    node: str
    listen: tuple[str, int]
    peer: tuple[str, int]
    key_file: str
    state_dir: str = DEFAULT_STATE_DIR
    files: list[LeaseFileConfig] = field(default_factory=list)
    # Tunables; the defaults suit a LAN between two boxes.
    max_frame: int = 16 << 20
    snapshot_chunk: int = 4096  # records per snapshot frame
    heartbeat: float = 1.0  # seconds between pings on an idle link
    dead_after: float = 5.0  # no frame for this long: drop the link
    reconnect: float = 0.2  # first retry delay; doubles up to 2 s
    poll_interval: float = 0.5  # lease files are re-checked at least this often

    def __post_init__(self) -> None:
        names = [f.name for f in self.files]
        if len(set(names)) != len(names):
            raise ValueError(f"lease_sync.files: duplicate names in {names}")


def parse_hostport(value: str | tuple[str, int], default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """'198.51.100.1', '198.51.100.1:6470', '[2001:db8::1]:6470' -> (host, port)."""
    if isinstance(value, tuple):
        return value
    text = str(value).strip()
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if m:
        return m.group(1), int(m.group(2) or default_port)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def sync_config_from_dict(section: dict[str, object], node: str, state_dir: str | None = None) -> SyncConfig:
    """Build a SyncConfig from the parsed `lease_sync:` mapping (see module doc).

    Raises ValueError naming the offending key; the caller adds file/line.
    """
    known = {"listen", "peer", "port", "key_file", "state_dir", "files", "node"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ValueError(f"lease_sync.{unknown[0]}: unknown key")
    for key in ("listen", "peer", "key_file"):
        if not isinstance(section.get(key), str) or not section.get(key):
            raise ValueError(f"lease_sync.{key}: required, a string")
    port = section.get("port", DEFAULT_PORT)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ValueError(f"lease_sync.port: must be a port number, not {port!r}")
    files_raw = section.get("files") or []
    if not isinstance(files_raw, list):
        raise ValueError("lease_sync.files: must be a list")
    files = []
    for i, f in enumerate(files_raw):
        if not isinstance(f, dict) or set(f) - {"name", "path", "family"} or not {"name", "path"} <= set(f):
            raise ValueError(f"lease_sync.files[{i}]: want {{name, path, family}}")
        try:
            files.append(LeaseFileConfig(str(f["name"]), str(f["path"]), int(f.get("family", 4))))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"lease_sync.files[{i}]: {exc}") from None
    return SyncConfig(
        node=str(section.get("node") or node),
        listen=parse_hostport(str(section["listen"]), port),
        peer=parse_hostport(str(section["peer"]), port),
        key_file=str(section["key_file"]),
        state_dir=str(section.get("state_dir") or state_dir or DEFAULT_STATE_DIR),
        files=files,
    )
