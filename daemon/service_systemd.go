package daemon

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
)

// Unit is what the systemd unit of the service depends on.
type Unit struct {
	Executable string // absolute path of the mailferry binary
	Config     string // absolute path of the config file
	Data       string // absolute data directory: the one place besides its state and log directories the daemon writes
	User       string // the system user the daemon runs as
}

var unixUserName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// unitPath checks that p can be written into a unit file as it is: absolute,
// and free of what systemd would read as a specifier (%), a variable ($),
// a quote, an escape or a command separator (;), and of what
// kardianos/service's template engine would read as an action ({, }).
func unitPath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%s %q: not an absolute path", what, p)
	}
	if i := strings.IndexAny(p, "%$\"'\\;{}`\n\r\t"); i >= 0 {
		return fmt.Errorf("%s %q: a systemd unit can't hold %q in a path; move the file", what, p, p[i])
	}
	return nil
}

// unitArg quotes a path with spaces for systemd's command-line parser.
func unitArg(s string) string {
	if strings.ContainsRune(s, ' ') {
		return `"` + s + `"`
	}
	return s
}

// quoteArgs joins args for display, quoting the ones with spaces.
func quoteArgs(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = unitArg(a)
	}
	return strings.Join(q, " ")
}

// SystemdUnit renders the hardened systemd unit of the service.
// packaging/mailferry.service is this unit for the packaged paths
// (/usr/bin/mailferry, /etc/mailferry/mailferry.conf, /var/lib/mailferry).
func SystemdUnit(u Unit) (string, error) {
	for _, p := range []struct{ what, path string }{{"executable", u.Executable}, {"config file", u.Config}, {"data directory", u.Data}} {
		if err := unitPath(p.what, p.path); err != nil {
			return "", err
		}
	}
	if !unixUserName.MatchString(u.User) {
		return "", fmt.Errorf("user %q: not a valid system user name", u.User)
	}
	r := strings.NewReplacer(
		"@EXEC@", unitArg(u.Executable)+" "+quoteArgs(serviceArgs(u.Config)),
		"@USER@", u.User,
		"@DATA@", unitArg(filepath.Clean(u.Data)),
	)
	return r.Replace(unitTemplate), nil
}

// unitTemplate: @EXEC@, @USER@ and @DATA@ are replaced. kardianos/service
// renders SystemdScript with its own template engine; this text has no
// "{{" for it to expand.
const unitTemplate = `# mailferry: keeps every mailbox of the list in sync with Office 365 and
# proxies IMAP meanwhile. Logs: /var/log/mailferry/mailferry.log (JSON);
# start, stop and fatal errors also in the journal (journalctl -u mailferry).
#
# Hardened: the daemon runs as its own user with one privilege, binding the
# IMAP ports below 1024 (143, 993) for the proxy, and sees the file system
# read-only except its data directory (ReadWritePaths; the "-" lets the unit
# start when it is missing, and the daemon then says so), /var/lib/mailferry
# and /var/log/mailferry. Change settings with "systemctl edit mailferry",
# e.g. for a data directory elsewhere:
#     [Service]
#     ReadWritePaths=/srv/mailferry
# or, without the proxy on low ports, no privilege at all:
#     [Service]
#     AmbientCapabilities=
#     CapabilityBoundingSet=

[Unit]
Description=mailferry IMAP to Office 365 migration daemon and proxy
Documentation=https://github.com/mailferry/mailferry
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
ExecStart=@EXEC@
ExecReload=/bin/kill -HUP $MAINPID
User=@USER@
Group=@USER@
Restart=on-failure
RestartSec=10s
# Exit code 2 is a config error: restarting can't fix it.
RestartPreventExitStatus=2
TimeoutStopSec=30s
LimitNOFILE=65536
UMask=0027

StateDirectory=mailferry
StateDirectoryMode=0750
LogsDirectory=mailferry
LogsDirectoryMode=0750
ReadWritePaths=-@DATA@

NoNewPrivileges=yes
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
AmbientCapabilities=CAP_NET_BIND_SERVICE
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
DevicePolicy=closed
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`
