#!/bin/sh
# After mailferry is removed. The data directory /var/lib/mailferry (the
# migration's state: without it a new run copies everything again) and the
# user mailferry stay, even on purge; a purge removes the logs.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$1" = purge ]; then
	rm -rf /var/log/mailferry
fi
exit 0
