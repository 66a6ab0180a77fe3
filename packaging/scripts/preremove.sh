#!/bin/sh
# Before mailferry is removed (.deb "remove"; .rpm 0, when no version stays):
# stop and disable the daemon. Upgrades leave it running.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl disable --now mailferry.service >/dev/null 2>&1 || true
fi
exit 0
