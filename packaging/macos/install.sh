#!/bin/sh
# Install vrift-daemon on macOS as a LaunchDaemon running as _vrift:
#   - the _vrift group and user (dscl), with an unused ID below 500 (a
#     system account: hidden, no shell, no password);
#   - the store (/usr/local/var/vrift/the_source, 0755), the daemon's state
#     (/usr/local/var/vrift/state, 0700), its log directory, and the socket's
#     directory ~_vrift/Library/Application Support/vrift (0755);
#   - /usr/local/bin/vrift and vrift-daemon (from BIN, default ../../bin:
#     `make build` on the Mac) and the plist in /Library/LaunchDaemons;
#   - launchctl bootstrap of the job (launchd binds the socket).
# Idempotent: a second run creates nothing and restarts nothing unless a
# binary or the plist changed. Run with sudo. VRIFT_ROOT prefixes every
# path (tests run it against a scratch tree with fake dscl and launchctl).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
R=${VRIFT_ROOT:-}
BIN=${BIN:-$here/../../bin}
LABEL=com.velorift.vrift-daemon
PLIST=/Library/LaunchDaemons/$LABEL.plist
NAME=_vrift
HOME_DIR=/Users/$NAME
SOCK_DIR="$HOME_DIR/Library/Application Support/vrift"
VAR=/usr/local/var/vrift

say() { echo "vrift install: $*"; }

if [ "$(id -u)" != 0 ]; then
	echo "vrift install: run as root (sudo $0)" >&2
	exit 1
fi
for b in vrift vrift-daemon; do
	if [ ! -x "$BIN/$b" ]; then
		echo "vrift install: $BIN/$b missing: run make build first (or set BIN)" >&2
		exit 1
	fi
done

# free_id prints the highest ID below 500 (and above 200, clear of the
# low IDs macOS hands out to its own daemons) used by no user and no group.
free_id() {
	used=$( (dscl . -list /Users UniqueID; dscl . -list /Groups PrimaryGroupID) | awk '{print $2}')
	id=499
	while [ "$id" -gt 200 ]; do
		if ! printf '%s\n' "$used" | grep -qx "$id"; then
			echo "$id"
			return 0
		fi
		id=$((id - 1))
	done
	echo "vrift install: no free ID between 201 and 499" >&2
	return 1
}

# The group, then the user with it as primary group.
if dscl . -read "/Groups/$NAME" PrimaryGroupID >/dev/null 2>&1; then
	gid=$(dscl . -read "/Groups/$NAME" PrimaryGroupID | awk '{print $2}')
else
	gid=$(free_id)
	say "creating group $NAME ($gid)"
	dscl . -create "/Groups/$NAME"
	dscl . -create "/Groups/$NAME" PrimaryGroupID "$gid"
	dscl . -create "/Groups/$NAME" RealName "Velo Rift Daemon"
	dscl . -create "/Groups/$NAME" Password '*'
fi
if ! dscl . -read "/Users/$NAME" UniqueID >/dev/null 2>&1; then
	uid=$gid
	if dscl . -list /Users UniqueID | awk '{print $2}' | grep -qx "$uid"; then
		uid=$(free_id)
	fi
	say "creating user $NAME ($uid)"
	dscl . -create "/Users/$NAME"
	dscl . -create "/Users/$NAME" UniqueID "$uid"
	dscl . -create "/Users/$NAME" PrimaryGroupID "$gid"
	dscl . -create "/Users/$NAME" RealName "Velo Rift Daemon"
	dscl . -create "/Users/$NAME" NFSHomeDirectory "$HOME_DIR"
	dscl . -create "/Users/$NAME" UserShell /usr/bin/false
	dscl . -create "/Users/$NAME" Password '*'
	dscl . -create "/Users/$NAME" IsHidden 1
fi

# mkdir_owned DIR MODE OWNER: make DIR if missing; set its mode and owner
# every time (that changes nothing when they are right, and fixes a
# directory an interrupted run left root-owned).
mkdir_owned() {
	if [ ! -d "$R$1" ]; then
		say "creating $1"
		mkdir -p "$R$1"
	fi
	chmod "$2" "$R$1"
	chown "$3" "$R$1"
}

mkdir_owned "$HOME_DIR" 755 "$NAME:$NAME"
mkdir_owned "$HOME_DIR/Library" 755 "$NAME:$NAME"
mkdir_owned "$HOME_DIR/Library/Application Support" 755 "$NAME:$NAME"
mkdir_owned "$SOCK_DIR" 755 "$NAME:$NAME"
mkdir_owned "$VAR" 755 "$NAME:$NAME"
mkdir_owned "$VAR/the_source" 755 "$NAME:$NAME"
mkdir_owned "$VAR/state" 700 "$NAME:$NAME"
# Shared directories are made if missing and otherwise left alone
# (Homebrew on Intel Macs owns /usr/local/bin).
for d in /usr/local/var/log /usr/local/bin /Library/LaunchDaemons; do
	if [ ! -d "$R$d" ]; then
		say "creating $d"
		mkdir -p "$R$d"
	fi
done

# install_file SRC DEST MODE: copy when the content differs; prints
# "changed" then.
install_file() {
	if [ -f "$R$2" ] && cmp -s "$1" "$R$2"; then
		return 0
	fi
	say "installing $2"
	cp "$1" "$R$2.new"
	chmod "$3" "$R$2.new"
	chown root:wheel "$R$2.new"
	mv -f "$R$2.new" "$R$2"
	echo changed >>"$changes"
}
changes=$(mktemp)
trap 'rm -f "$changes"' EXIT
install_file "$BIN/vrift" /usr/local/bin/vrift 755
install_file "$BIN/vrift-daemon" /usr/local/bin/vrift-daemon 755
install_file "$here/../launchd/$LABEL.plist" "$PLIST" 644

# Load the job; reload it only if something it runs changed.
if launchctl print "system/$LABEL" >/dev/null 2>&1; then
	if [ -s "$changes" ]; then
		say "reloading $LABEL"
		launchctl bootout "system/$LABEL" || true
		launchctl bootstrap system "$R$PLIST"
	fi
else
	say "loading $LABEL"
	launchctl enable "system/$LABEL"
	launchctl bootstrap system "$R$PLIST"
fi
say "done: vrift status should say mode: daemon"
