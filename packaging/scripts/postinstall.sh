#!/bin/sh
# vrift postinstall: create the vrift user and its directories, then enable
# the socket where systemd runs. Idempotent: installing again changes nothing.
set -e

if command -v systemd-sysusers >/dev/null 2>&1 && [ -f /usr/lib/sysusers.d/vrift.conf ]; then
	systemd-sysusers /usr/lib/sysusers.d/vrift.conf
fi
# Fallback (the RFC's recipe) where systemd-sysusers is missing or failed.
getent group vrift >/dev/null || groupadd -r vrift
getent passwd vrift >/dev/null ||
	useradd -r -g vrift -d /var/lib/vrift -s /usr/sbin/nologin -c "Velo Rift Daemon" vrift

if command -v systemd-tmpfiles >/dev/null 2>&1 && [ -f /usr/lib/tmpfiles.d/vrift.conf ]; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/vrift.conf || true
fi
mkdir -p /var/lib/vrift/the_source /var/lib/vrift/state /run/vrift
chown vrift:vrift /var/lib/vrift /var/lib/vrift/the_source /var/lib/vrift/state /run/vrift
chmod 755 /var/lib/vrift /var/lib/vrift/the_source /run/vrift
chmod 700 /var/lib/vrift/state

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable --now vrift-daemon.socket || true
fi
exit 0
