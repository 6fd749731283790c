#!/bin/sh
# vrift preremove: stop the daemon and its socket where systemd runs.
set -e
if [ -d /run/systemd/system ]; then
	systemctl disable --now vrift-daemon.socket vrift-daemon.service >/dev/null 2>&1 || true
fi
exit 0
