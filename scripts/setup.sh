#!/bin/sh
# Installs what hasvc, its lab and its tests need on a Debian machine (run as root).
# Debian packages only when one is missing, so a second run costs nothing.
set -eu
cd "$(dirname "$0")/.."

PACKAGES="ucarp keepalived isc-dhcp-server isc-dhcp-client tftpd-hpa tftp-hpa openbsd-inetd
dnsmasq-base iproute2 procps shellcheck"

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Debian's Python refuses system-wide installs (PEP 668); hasvc is a system daemon, so allow it.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check -e '.[test]'
