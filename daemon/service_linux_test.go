package daemon

import (
	"errors"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kardianos/service"
)

// On a machine with systemd, as root: a real install, a refused second
// one, and uninstall. It creates the user mailferry if missing (and
// removes it again).
func TestServiceInstallSystemd(t *testing.T) {
	if service.Platform() != "linux-systemd" {
		t.Skip("no systemd running here")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if installedUnitFile() != "" {
		t.Skip("a mailferry service is installed here already")
	}
	if _, err := user.Lookup(DefaultServiceUser); err != nil {
		t.Cleanup(func() { exec.Command("userdel", DefaultServiceUser).Run() })
	}
	// Not under /tmp: the unit hides it.
	dir, err := os.MkdirTemp("/var/lib", "mailferry-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	conf := filepath.Join(dir, "mailferry.conf")
	os.WriteFile(filepath.Join(dir, "users.csv"), []byte("EmailAddress,UserName,Password\na@example.com,a,p\n"), 0o640)
	os.WriteFile(conf, []byte("source = \"imaps://imap.example.com\"\ntarget = \"imaps://outlook.office365.com\"\nmailboxes = \"users.csv\"\ndata = \"data\"\n"), 0o640)
	setup := ServiceSetup{Config: conf, Executable: "/usr/local/bin/mailferry-test"}
	out, stdout, _ := testStreams()
	if err := ServiceInstall(setup, out); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ServiceControl("uninstall", out) })
	unit, err := os.ReadFile(etcUnit)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "ExecStart=/usr/local/bin/mailferry-test service run --config "+conf+"\n") {
		t.Errorf("unit:\n%s", unit)
	}
	if err := ServiceInstall(setup, out); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Errorf("second install: %v", err)
	}
	if err := ServiceControl("uninstall", out); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(etcUnit); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unit still there after uninstall: %v\n%s", err, stdout)
	}
}
