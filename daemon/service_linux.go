package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/kardianos/service"

	"github.com/mailferry/mailferry/config"
)

// DefaultLogFile is where the service logs unless told otherwise:
// systemd's LogsDirectory of the unit.
func DefaultLogFile(*config.Options) string { return "/var/log/mailferry/mailferry.log" }

// Where systemd finds units: written by `service install` (kardianos
// writes /etc/systemd/system), or by the package.
const etcUnit = "/etc/systemd/system/" + ServiceName + ".service"

var packagedUnits = []string{
	"/usr/lib/systemd/system/" + ServiceName + ".service",
	"/lib/systemd/system/" + ServiceName + ".service",
}

// installedUnitFile is the unit file of the service, "" when there is none.
func installedUnitFile() string {
	for _, f := range append([]string{etcUnit}, packagedUnits...) {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return ""
}

// packagedUnitFile is the unit file the .deb or .rpm installed, "" when
// there is none or `service install` wrote one that overrides it.
func packagedUnitFile() string {
	if _, err := os.Stat(etcUnit); err == nil {
		return ""
	}
	for _, f := range packagedUnits {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return ""
}

// checkPlatform refuses service managers other than systemd: the unit is
// what makes the service safe.
func checkPlatform() error {
	if p := service.Platform(); p != "linux-systemd" {
		return Fatal(fmt.Errorf("systemd is not running here (service manager: %s): mailferry service supports systemd on Linux; "+
			"elsewhere run `mailferry run --config FILE` under the system's supervisor", p))
	}
	return nil
}

// hiddenByUnit are the directories the unit hides from the daemon
// (ProtectHome=yes, PrivateTmp=yes).
var hiddenByUnit = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// prepareInstall makes the system ready for the unit: it needs root and
// systemd, creates the service user and the data directory, warns about
// files the user can't read, and puts the hardened unit into cfg.
func prepareInstall(cfg *service.Config, s ServiceSetup, o *config.Options, out Streams) error {
	if os.Geteuid() != 0 {
		return Fatal(fmt.Errorf("service install writes a systemd unit and creates the user %s: run it as root (sudo)", s.User))
	}
	for _, f := range []struct{ what, path string }{
		{"the mailferry binary", s.Executable}, {"the config file", s.Config}, {"the data directory", o.Data}, {"the mailbox list", o.Mailboxes},
	} {
		for _, h := range hiddenByUnit {
			if f.path == h || strings.HasPrefix(f.path, h+"/") {
				return Fatal(fmt.Errorf("%s %s is under %s, which the hardened service can't see: move it (e.g. to /usr/local/bin, /etc/mailferry or /var/lib/mailferry)", f.what, f.path, h))
			}
		}
	}
	unit, err := SystemdUnit(Unit{Executable: s.Executable, Config: s.Config, Data: o.Data, User: s.User})
	if err != nil {
		return Fatal(err)
	}
	u, err := ensureUser(s.User, o.Data, out)
	if err != nil {
		return Fatal(err)
	}
	if err := ensureDataDir(o.Data, u, out); err != nil {
		return Fatal(err)
	}
	for _, f := range []string{s.Config, o.Mailboxes} {
		if _, err := os.Stat(f); err != nil {
			fmt.Fprintf(out.Stderr, "warning: %v: the service needs it\n", err)
		} else if !readableBy(f, u) {
			fmt.Fprintf(out.Stderr, "warning: user %s can't read %s, so the service would fail: chgrp %s %s && chmod g+r %s\n",
				s.User, f, s.User, f, f)
		}
	}
	cfg.UserName = s.User
	cfg.Option["SystemdScript"] = unit
	return nil
}

type sysUser struct {
	name     string
	uid, gid int
}

// ensureUser looks the service user up, creating it as a system user
// without login when it is missing.
func ensureUser(name, home string, out Streams) (sysUser, error) {
	u, err := user.Lookup(name)
	var unknown user.UnknownUserError
	if errors.As(err, &unknown) {
		shell := "/usr/sbin/nologin"
		if _, err := os.Stat(shell); err != nil {
			shell = "/sbin/nologin"
		}
		cmd := exec.Command("useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
			"--shell", shell, "--comment", "mailferry daemon", name)
		if b, err := cmd.CombinedOutput(); err != nil {
			return sysUser{}, fmt.Errorf("creating the user %s: %v: %s", name, err, strings.TrimSpace(string(b)))
		}
		fmt.Fprintf(out.Stdout, "created the system user %s\n", name)
		u, err = user.Lookup(name)
	}
	if err != nil {
		return sysUser{}, fmt.Errorf("user %s: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return sysUser{name: name, uid: uid, gid: gid}, nil
}

// ensureDataDir creates the data directory for u when it is missing, and
// warns when it exists but belongs to someone else.
func ensureDataDir(dir string, u sysUser, out Streams) error {
	fi, err := os.Stat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o750); err != nil {
			return err
		}
		if err := os.Chown(dir, u.uid, u.gid); err != nil {
			return err
		}
		fmt.Fprintf(out.Stdout, "created the data directory %s for %s\n", dir, u.name)
		return nil
	}
	if err != nil {
		return err
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != u.uid {
		fmt.Fprintf(out.Stderr, "warning: the data directory %s isn't owned by %s, who must write it: chown -R %s:%s %s\n",
			dir, u.name, u.name, u.name, dir)
	}
	return nil
}

// readableBy tells whether u may read file, by its owner, group and mode
// (the user's supplementary groups aside).
func readableBy(file string, u sysUser) bool {
	fi, err := os.Stat(file)
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	m := fi.Mode().Perm()
	switch {
	case int(st.Uid) == u.uid:
		return m&0o400 != 0
	case int(st.Gid) == u.gid:
		return m&0o040 != 0
	}
	return m&0o004 != 0
}
