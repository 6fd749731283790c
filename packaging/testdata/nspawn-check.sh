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
journalctl -u vrift-daemon.service --no-pager | tail -5
echo DONE
