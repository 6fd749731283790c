#!/bin/sh
# vrift postinstall: create the vrift user and its directories, then enable
# the socket where systemd runs. Idempotent: installing again changes nothing.
#
# Directories come from tmpfiles.d (systemd-tmpfiles refuses to follow a
# symlink out of a directory another user owns). This script never runs
# chown or chmod by path on anything under /var/lib/vrift: that tree is the
# vrift user's, who could have planted a symlink there to have root change
# the owner or mode of any file.
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
# Without systemd-tmpfiles: create what is missing, never touch what exists.
# mkdir -m sets the mode atomically; chown -h changes the entry itself even
# if it was swapped for a symlink after mkdir.
mkdirown() {
	if [ ! -e "$1" ] && [ ! -L "$1" ]; then
		mkdir -m "$2" "$1" && chown -h vrift:vrift "$1"
	fi
}
mkdirown /var/lib/vrift 755
mkdirown /var/lib/vrift/the_source 755
mkdirown /var/lib/vrift/state 700
mkdirown /run/vrift 755

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
	systemctl enable --now vrift-daemon.socket || true
fi
exit 0
