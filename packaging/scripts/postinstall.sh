#!/bin/sh
# After mailferry is unpacked. Arguments: .deb "configure" [previous version];
# .rpm the number of installed versions (1: install, 2: upgrade).
set -e

case "$1" in
configure) [ -z "$2" ] && first=yes || first=no ;;
1) first=yes ;;
[0-9]*) first=no ;;
*) exit 0 ;;
esac

# The daemon's own user, without login or home of its own.
if ! getent passwd mailferry >/dev/null; then
	shell=/usr/sbin/nologin
	[ -x "$shell" ] || shell=/sbin/nologin
	useradd --system --user-group --no-create-home --home-dir /var/lib/mailferry \
		--shell "$shell" --comment "mailferry daemon" mailferry
fi

chown mailferry:mailferry /var/lib/mailferry /var/log/mailferry
chmod 0750 /var/lib/mailferry /var/log/mailferry

# The config may hold secrets: root writes it, the daemon reads it. An admin's
# own group choice is left alone.
conf=/etc/mailferry/mailferry.conf
if [ -f "$conf" ] && [ "$(stat -c %G "$conf")" = root ]; then
	chgrp mailferry "$conf"
	chmod 0640 "$conf"
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	# An upgrade restarts a running daemon on the new binary.
	[ "$first" = no ] && systemctl try-restart mailferry.service >/dev/null 2>&1 || true
fi

if [ "$first" = yes ]; then
	cat <<'MSG'
mailferry is installed, not started. Next:
  1. edit /etc/mailferry/mailferry.conf, and write the mailbox list
     /etc/mailferry/users.csv (see users.csv.sample), readable by mailferry:
         chgrp mailferry /etc/mailferry/users.csv && chmod 640 /etc/mailferry/users.csv
  2. mailferry config check /etc/mailferry/mailferry.conf
  3. systemctl enable --now mailferry     (logs: /var/log/mailferry/, journalctl -u mailferry)
MSG
fi
exit 0
