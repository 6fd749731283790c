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
# The watcher's user unit: READY after its start-up scan, a file written
# later stored through the daemon, a clean stop. A user manager needs logind
# and D-Bus, which this container lacks, so PID 1 runs the same unit file
# with User= added.
useradd -m -U wuser
mkdir -p /home/wuser/app/node_modules/a && echo '{}' >/home/wuser/app/package.json && echo one >/home/wuser/app/node_modules/a/x.js
chown -R wuser:wuser /home/wuser/app
mkdir -p /run/systemd/system
sed 's/^\[Service\]$/[Service]\nUser=wuser\nGroup=wuser/' /usr/lib/systemd/user/vrift-watch@.service >/run/systemd/system/vrift-watch@.service
systemctl daemon-reload
asw() { setpriv --reuid=wuser --regid=wuser --init-groups -- env HOME=/home/wuser "$@"; }
inst="vrift-watch@$(systemd-escape --path /home/wuser/app).service"
systemctl start "$inst"
echo "watch unit: $(systemctl is-active "$inst")"
systemctl show "$inst" -p Type -p User -p ExecStart
asw sh -c 'echo two >/home/wuser/app/node_modules/a/y.js'
asw /usr/bin/vrift watch --sync /home/wuser/app
echo "watch sync exit: $?"
asw /usr/bin/vrift status /home/wuser/app | grep -E 'files|watcher'
systemctl stop "$inst"
echo "watch unit after stop: $(systemctl is-active "$inst")"
journalctl -u "$inst" --no-pager | tail -5
echo DONE
