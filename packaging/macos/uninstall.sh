#!/bin/sh
# Remove what install.sh installed: stop and unload the LaunchDaemon, remove
# the plist and /usr/local/bin/vrift{,-daemon}, delete the _vrift user and
# group. The shared store and the daemon's state stay (as with dpkg -r)
# unless --purge is given, which deletes /usr/local/var/vrift, every stored
# blob with it, and ~_vrift. Idempotent: a second run does nothing. Run with
# sudo. VRIFT_ROOT prefixes every path, as in install.sh.
set -eu

R=${VRIFT_ROOT:-}
LABEL=com.velorift.vrift-daemon
PLIST=/Library/LaunchDaemons/$LABEL.plist
NAME=_vrift
VAR=/usr/local/var/vrift
purge=
case "${1:-}" in
--purge) purge=1 ;;
"") ;;
*)
	echo "usage: $0 [--purge]" >&2
	exit 2
	;;
esac

say() { echo "vrift uninstall: $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "vrift uninstall: run as root (sudo $0)" >&2
	exit 1
fi

if launchctl print "system/$LABEL" >/dev/null 2>&1; then
	say "unloading $LABEL"
	launchctl bootout "system/$LABEL"
fi
for f in "$PLIST" /usr/local/bin/vrift /usr/local/bin/vrift-daemon; do
	if [ -e "$R$f" ]; then
		say "removing $f"
		rm -f "$R$f"
	fi
done
# The socket launchd made; the daemon is gone, nobody answers it.
sock="/Users/$NAME/Library/Application Support/vrift/daemon.sock"
if [ -e "$R$sock" ] || [ -S "$R$sock" ]; then
	rm -f "$R$sock"
fi
if dscl . -read "/Users/$NAME" UniqueID >/dev/null 2>&1; then
	say "deleting user $NAME"
	dscl . -delete "/Users/$NAME"
fi
if dscl . -read "/Groups/$NAME" PrimaryGroupID >/dev/null 2>&1; then
	say "deleting group $NAME"
	dscl . -delete "/Groups/$NAME"
fi
if [ -n "$purge" ]; then
	for d in "$VAR" "/Users/$NAME"; do
		if [ -e "$R$d" ]; then
			say "deleting $d (--purge: every stored blob goes)"
			rm -rf "$R$d"
		fi
	done
elif [ -d "$R$VAR" ]; then
	say "kept the store and state in $VAR (--purge deletes them)"
fi
