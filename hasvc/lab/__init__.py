"""A namespace lab for drills: real ucarp, keepalived, dhcpd, dhclient and in.tftpd on a private bridge.

netns builds and tears down the lab; carp, dhcpd and tftpd start the real daemons in it.
Needs root. Only documentation addresses, nothing attached to the root namespace.
"""
