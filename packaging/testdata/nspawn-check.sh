#!/bin/sh
exec >/out/result 2>&1
set -x
sleep 1
systemctl is-active vrift-daemon.socket
ls -l /run/vrift/
mkdir -p /tmp/u/proj/lib && echo '{}' > /tmp/u/proj/package.json && echo "hello $(date +%s%N)" > /tmp/u/proj/lib/a.txt
chown -R nobody /tmp/u; chmod 755 /tmp/u
setpriv --reuid=nobody --regid=nogroup --clear-groups -- env HOME=/tmp/u /usr/bin/vrift ingest /tmp/u/proj/lib
echo "ingest exit: $?"
setpriv --reuid=nobody --regid=nogroup --clear-groups -- env HOME=/tmp/u /usr/bin/vrift status
systemctl show vrift-daemon.service -p Type -p User -p ActiveState -p SubState -p MainPID -p StatusText
readlink /tmp/u/proj/lib/a.txt
# The unit's LimitNOFILE reaches the daemon (systemd clamps it to its own
# hard limit, which a container may have lower).
pid=$(systemctl show -p MainPID --value vrift-daemon.service)
echo "unit limits: $(grep 'Max open files' "/proc/$pid/limits")"
echo "pid1 limits: $(grep 'Max open files' /proc/1/limits)"
# Under the unit's syscall filter (which denies @resources), Go still raises
# a soft RLIMIT_NOFILE below the hard one at startup (it uses prlimit64).
mkdir -p /tmp/rl && chown vrift:vrift /tmp/rl
systemd-run --unit=vrift-rl -p User=vrift -p NoNewPrivileges=yes -p SystemCallArchitectures=native \
	-p SystemCallFilter=@system-service -p 'SystemCallFilter=~@privileged @resources' -p SystemCallErrorNumber=EPERM \
	-p LimitNOFILE=1024:8192 /usr/bin/vrift-daemon --store /tmp/rl/store --state /tmp/rl/state --socket /tmp/rl/d.sock --config /dev/null
sleep 2
pid=$(systemctl show -p MainPID --value vrift-rl.service)
echo "filtered limits: $(grep 'Max open files' "/proc/$pid/limits")"
journalctl -u vrift-rl.service --no-pager | grep -o 'max_fds_total=[0-9]*' 
journalctl -u vrift-daemon.service --no-pager | tail -5
# The watcher's user unit in a real user manager (a lingering user): READY
# after its start-up scan, a file written later stored through the daemon.
useradd -m -U wuser
uid=$(id -u wuser)
mkdir -p /home/wuser/app/node_modules/a && echo '{}' >/home/wuser/app/package.json && echo one >/home/wuser/app/node_modules/a/x.js
chown -R wuser:wuser /home/wuser/app
# The user's manager (as lingering would start it; there is no D-Bus here
# for loginctl).
systemctl start "user@$uid.service"
for _ in $(seq 100); do [ -S "/run/user/$uid/systemd/private" ] && break; sleep 0.1; done
asw() { setpriv --reuid=wuser --regid=wuser --init-groups -- env HOME=/home/wuser XDG_RUNTIME_DIR="/run/user/$uid" "$@"; }
inst="vrift-watch@$(systemd-escape --path /home/wuser/app).service"
asw systemctl --user start "$inst"
echo "watch unit: $(asw systemctl --user is-active "$inst")"
asw sh -c 'echo two >/home/wuser/app/node_modules/a/y.js'
asw /usr/bin/vrift watch --sync /home/wuser/app
echo "watch sync exit: $?"
asw /usr/bin/vrift status /home/wuser/app | grep -E 'files|watcher'
asw systemctl --user stop "$inst"
echo "watch unit after stop: $(asw systemctl --user is-active "$inst")"
asw journalctl --user -u "$inst" --no-pager | tail -5
echo DONE
