"""hasvc: supervise network-boot services on a CARP/VRRP pair."""

__version__ = "0.1.0"
