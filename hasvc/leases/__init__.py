"""Lease state for the DHCP pair: read dhcpd's lease files, copy them to the peer.

parser  - dhcpd 4.4 lease files (v4 and v6), whole or incrementally (LeaseTail)
store   - the peer's copy under state_dir; render/validate/install for dhcpd
sync    - LeaseSync: the authenticated TCP link between the two nodes
config  - SyncConfig and the `lease_sync:` YAML keys
cli     - `hasvc leases show` / `hasvc leases status`
"""
