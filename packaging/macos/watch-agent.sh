#!/bin/sh
# Run `vrift watch DIR` (live ingest) as a LaunchAgent of the current user,
# one per project: the macOS counterpart of the vrift-watch@.service user
# unit. launchd has no templates, so this fills
# packaging/launchd/com.velorift.vrift-watch.plist in for DIR.
#
#   watch-agent.sh enable DIR    write ~/Library/LaunchAgents/<label>.plist
#                                and load it (starts now and at each login)
#   watch-agent.sh disable DIR   unload it and remove the plist
#   watch-agent.sh label DIR     print the job's label
#
# The label is com.velorift.vrift-watch.<directory name>-<checksum of the
# path>, so two projects of the same name do not collide; the log is
# ~/Library/Logs/vrift-watch-<same>.log. Idempotent: enabling again changes
# nothing unless the plist would differ (then the job is reloaded). Run as
# the user who owns the project, not with sudo. VRIFT overrides the vrift
# binary (default /usr/local/bin/vrift, where install.sh puts it).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
VRIFT=${VRIFT:-/usr/local/bin/vrift}
TEMPLATE=$here/../launchd/com.velorift.vrift-watch.plist

usage() {
	echo "usage: $0 enable|disable|label DIR" >&2
	exit 2
}
[ $# -eq 2 ] || usage
cmd=$1
case $cmd in enable | disable | label) ;; *) usage ;; esac

if [ ! -d "$2" ]; then
	echo "vrift watch-agent: $2: not a directory" >&2
	exit 1
fi
dir=$(cd "$2" && pwd -P)
case $dir in
*'
'*)
	echo "vrift watch-agent: $dir: a path with a newline cannot be a launchd job's argument here" >&2
	exit 1
	;;
esac
uid=$(id -u)
if [ "$uid" = 0 ] && [ "$cmd" = enable ]; then
	echo "vrift watch-agent: run as the project's owner, not root (the agent runs as whoever enables it)" >&2
	exit 1
fi

# The label: launchd labels are reverse-DNS names, so only [A-Za-z0-9._-]
# of the directory's name, then the path's CRC (cksum: POSIX, on every Mac).
name=$(printf '%s' "${dir##*/}" | LC_ALL=C tr -c 'A-Za-z0-9._-' '_' | cut -c1-40)
sum=$(printf '%s' "$dir" | cksum | awk '{print $1}')
label=com.velorift.vrift-watch.$name-$sum
if [ "$cmd" = label ]; then
	echo "$label"
	exit 0
fi
agents=$HOME/Library/LaunchAgents
plist=$agents/$label.plist
domain=gui/$uid

if [ "$cmd" = disable ]; then
	if launchctl print "$domain/$label" >/dev/null 2>&1; then
		echo "vrift watch-agent: unloading $label (the watcher drains and commits)"
		launchctl bootout "$domain/$label"
	fi
	if [ -e "$plist" ]; then
		rm -f "$plist"
		echo "vrift watch-agent: removed $plist"
	fi
	exit 0
fi

if [ ! -x "$VRIFT" ]; then
	echo "vrift watch-agent: $VRIFT missing: run packaging/macos/install.sh or set VRIFT" >&2
	exit 1
fi
# xml escapes a value for the plist; sub replaces @KEY@ by it (| is the
# sed delimiter, so it is escaped too, as are sed's & and \).
xml() { printf '%s' "$1" | sed -e 's/&/\&amp;/g' -e 's/</\&lt;/g' -e 's/>/\&gt;/g'; }
sedval() { xml "$1" | sed -e 's/[\\|&]/\\&/g'; }
mkdir -p "$agents" "$HOME/Library/Logs"
tmp=$(mktemp "$agents/.$label.XXXXXX")
trap 'rm -f "$tmp"' EXIT
sed -e "s|@LABEL@|$(sedval "$label")|g" \
	-e "s|@VRIFT@|$(sedval "$VRIFT")|g" \
	-e "s|@DIR@|$(sedval "$dir")|g" \
	-e "s|@LOG@|$(sedval "$HOME/Library/Logs/vrift-watch-$name-$sum.log")|g" \
	"$TEMPLATE" >"$tmp"
chmod 644 "$tmp"

loaded=false
if launchctl print "$domain/$label" >/dev/null 2>&1; then
	loaded=true
fi
if [ -f "$plist" ] && cmp -s "$tmp" "$plist"; then
	if $loaded; then
		echo "vrift watch-agent: $label already enabled for $dir"
		exit 0
	fi
else
	mv -f "$tmp" "$plist"
	echo "vrift watch-agent: wrote $plist"
	if $loaded; then
		echo "vrift watch-agent: reloading $label"
		launchctl bootout "$domain/$label"
		loaded=false
	fi
fi
echo "vrift watch-agent: loading $label (watching $dir; log ~/Library/Logs/vrift-watch-$name-$sum.log)"
launchctl enable "$domain/$label"
launchctl bootstrap "$domain" "$plist"
