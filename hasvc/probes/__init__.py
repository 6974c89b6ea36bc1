"""Active service probes (DHCP DISCOVER, TFTP read) and a dhclient driver for drills."""
