#!/bin/sh
# vrift postremove. Removing the package keeps the shared store and the
# daemon's records; purging (dpkg -P) deletes /var/lib/vrift, every user's
# stored blobs with it, and says so. The vrift user is kept (Debian policy:
# files it owned may remain elsewhere).
set -e
case "$1" in
purge)
	if [ -d /var/lib/vrift ]; then
		echo "vrift: purge: removing the shared store /var/lib/vrift (all stored blobs and pinned manifests)"
		rm -rf /var/lib/vrift
	fi
	rm -rf /run/vrift
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
