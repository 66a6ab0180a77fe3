package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/kardianos/service"

	"github.com/mailferry/mailferry/config"
)

var updateUnit = flag.Bool("update-unit", false, "rewrite packaging/mailferry.service from SystemdUnit")

// packagedUnit is the unit for the paths the .deb and .rpm install.
var packagedUnit = Unit{Executable: "/usr/bin/mailferry", Config: "/etc/mailferry/mailferry.conf", Data: "/var/lib/mailferry", User: "mailferry"}

func TestServiceSystemdUnit(t *testing.T) {
	unit, err := SystemdUnit(Unit{Executable: "/opt/mail ferry/mailferry", Config: "/srv/mf/mailferry.conf", Data: "/srv/mf/data/", User: "mailferry"})
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(unit, "\n")
	for _, want := range []string{
		`ExecStart="/opt/mail ferry/mailferry" service run --config /srv/mf/mailferry.conf`,
		"ExecReload=/bin/kill -HUP $MAINPID",
		"User=mailferry",
		"Group=mailferry",
		"Restart=on-failure",
		"RestartPreventExitStatus=2",
		"StateDirectory=mailferry",
		"LogsDirectory=mailferry",
		"ReadWritePaths=-/srv/mf/data",
		"ProtectSystem=strict",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"NoNewPrivileges=yes",
		"CapabilityBoundingSet=CAP_NET_BIND_SERVICE", "AmbientCapabilities=CAP_NET_BIND_SERVICE",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
		"SystemCallFilter=@system-service",
		"WantedBy=multi-user.target",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("unit lacks the line %q", want)
		}
	}
	for _, section := range []string{"[Unit]", "[Service]", "[Install]"} {
		if !slices.Contains(lines, section) {
			t.Errorf("unit lacks %s", section)
		}
	}
	// kardianos/service renders SystemdScript with its template engine:
	// text without actions comes out as it went in.
	if strings.Contains(unit, "{{") || strings.Contains(unit, "@EXEC@") || strings.Contains(unit, "@USER@") || strings.Contains(unit, "@DATA@") {
		t.Errorf("unit has template actions or unreplaced placeholders:\n%s", unit)
	}
	// Every setting is a key=value line in a section.
	for i, l := range lines {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "[") && !strings.Contains(l, "=") {
			t.Errorf("line %d: %q is no setting", i+1, l)
		}
	}
}

func TestServiceSystemdUnitRejects(t *testing.T) {
	for _, u := range []Unit{
		{Executable: "mailferry", Config: "/etc/mailferry/mailferry.conf", Data: "/var/lib/mailferry", User: "mailferry"},
		{Executable: "/usr/bin/mailferry", Config: "mailferry.conf", Data: "/var/lib/mailferry", User: "mailferry"},
		{Executable: "/usr/bin/mailferry", Config: "/etc/mail%ferry.conf", Data: "/var/lib/mailferry", User: "mailferry"},
		{Executable: "/usr/bin/mailferry", Config: "/etc/mailferry.conf", Data: "/var/lib/$HOME", User: "mailferry"},
		{Executable: "/usr/bin/mailferry", Config: "/etc/{{Name}}.conf", Data: "/var/lib/mailferry", User: "mailferry"},
		{Executable: "/usr/bin/mailferry", Config: "/etc/mailferry.conf", Data: "/var/lib/mailferry", User: "root; rm"},
		{Executable: "/usr/bin/mailferry", Config: "/etc/mailferry.conf", Data: "/var/lib/mailferry", User: ""},
	} {
		if _, err := SystemdUnit(u); err == nil {
			t.Errorf("SystemdUnit(%+v) = nil error", u)
		}
	}
}

// packaging/mailferry.service, which the packages install, is the unit
// `service install` writes for the packaged paths.
func TestServiceUnitMatchesPackaging(t *testing.T) {
	want, err := SystemdUnit(packagedUnit)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("..", "packaging", "mailferry.service")
	if *updateUnit {
		if err := os.WriteFile(file, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("%s differs from SystemdUnit for the packaged paths; run go test ./daemon -run TestServiceUnitMatchesPackaging -update-unit", file)
	}
}

// fakeService records what install, uninstall and control ask of the
// service manager.
type fakeService struct {
	service.Service
	status service.Status
	err    error // from Status
	calls  []string
}

func (f *fakeService) Status() (service.Status, error) { return f.status, f.err }
func (f *fakeService) Platform() string                { return "fake" }
func (f *fakeService) Install() error                  { f.calls = append(f.calls, "install"); return nil }
func (f *fakeService) Uninstall() error                { f.calls = append(f.calls, "uninstall"); return nil }
func (f *fakeService) Start() error                    { f.calls = append(f.calls, "start"); return nil }
func (f *fakeService) Stop() error                     { f.calls = append(f.calls, "stop"); return nil }
func (f *fakeService) Restart() error                  { f.calls = append(f.calls, "restart"); return nil }

func testStreams() (Streams, *bytes.Buffer, *bytes.Buffer) {
	var stdout, stderr bytes.Buffer
	return Streams{Stdout: &stdout, Stderr: &stderr}, &stdout, &stderr
}

func TestServiceInstallRefusesWhenInstalled(t *testing.T) {
	for _, st := range []service.Status{service.StatusRunning, service.StatusStopped} {
		f := &fakeService{status: st}
		out, _, _ := testStreams()
		o := config.Defaults()
		err := install(f, serviceConfig(serviceArgs("/etc/mailferry/mailferry.conf")), ServiceSetup{Config: "/etc/mailferry/mailferry.conf", User: "mailferry"}, &o, out)
		var ee *ExitError
		if !errors.As(err, &ee) || ee.Code != ExitFatal || !strings.Contains(err.Error(), "already installed") || !strings.Contains(err.Error(), "uninstall") {
			t.Errorf("status %v: install = %v, want an ExitFatal refusal naming uninstall", st, err)
		}
		if len(f.calls) > 0 {
			t.Errorf("status %v: refused install still called %v", st, f.calls)
		}
	}
	if installedUnitFile() == "" {
		f := &fakeService{err: errors.New("access denied")}
		out, _, _ := testStreams()
		o := config.Defaults()
		if err := install(f, serviceConfig(nil), ServiceSetup{}, &o, out); err == nil || !strings.Contains(err.Error(), "can't tell") {
			t.Errorf("unknown status: install = %v", err)
		}
	}
}

func TestServiceInstallChecksConfig(t *testing.T) {
	out, _, _ := testStreams()
	var ee *ExitError
	if err := ServiceInstall(ServiceSetup{}, out); !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Errorf("no --config: %v", err)
	}
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("parallel = 0\n"), 0o600)
	if err := ServiceInstall(ServiceSetup{Config: bad}, out); !errors.As(err, &ee) || ee.Code != ExitUsage || !strings.Contains(err.Error(), "config check") {
		t.Errorf("bad config: %v", err)
	}
	if err := ServiceInstall(ServiceSetup{Config: filepath.Join(dir, "missing.conf")}, out); !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Errorf("missing config: %v", err)
	}
}

func TestServiceUninstallStopsFirst(t *testing.T) {
	if packagedUnitFile() != "" {
		t.Skip("the mailferry package is installed here: uninstall refuses")
	}
	f := &fakeService{status: service.StatusRunning}
	out, stdout, _ := testStreams()
	if err := control(f, "uninstall", out); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.calls, []string{"stop", "uninstall"}) {
		t.Errorf("calls %v, want stop then uninstall", f.calls)
	}
	if !strings.Contains(stdout.String(), "removed") {
		t.Errorf("output %q", stdout)
	}

	f = &fakeService{status: service.StatusStopped}
	if err := control(f, "uninstall", out); err != nil || !slices.Equal(f.calls, []string{"uninstall"}) {
		t.Errorf("stopped: %v, calls %v", err, f.calls)
	}

	if installedUnitFile() == "" {
		f = &fakeService{err: service.ErrNotInstalled}
		if err := control(f, "uninstall", out); err == nil || !strings.Contains(err.Error(), "not installed") || len(f.calls) > 0 {
			t.Errorf("not installed: %v, calls %v", err, f.calls)
		}
	}
}

func TestServiceControl(t *testing.T) {
	for _, action := range []string{"start", "stop", "restart"} {
		f := &fakeService{}
		out, _, _ := testStreams()
		if err := control(f, action, out); err != nil || !slices.Equal(f.calls, []string{action}) {
			t.Errorf("%s: %v, calls %v", action, err, f.calls)
		}
	}
	for st, want := range map[service.Status]string{service.StatusRunning: "running", service.StatusStopped: "stopped"} {
		out, stdout, _ := testStreams()
		if err := control(&fakeService{status: st}, "status", out); err != nil || !strings.Contains(stdout.String(), want) {
			t.Errorf("status: %v, %q; want %q", err, stdout, want)
		}
	}
	out, _, _ := testStreams()
	if err := control(&fakeService{err: service.ErrNotInstalled}, "status", out); err == nil || !strings.Contains(err.Error(), "not installed") {
		t.Errorf("status when not installed: %v", err)
	}
	if err := control(&fakeService{}, "explode", out); err == nil {
		t.Error("unknown action accepted")
	}
}

// fakeSystemLog is the service manager's log.
type fakeSystemLog struct {
	mu          gosync.Mutex
	errs, infos []string
}

func (f *fakeSystemLog) Error(v ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprint(v...))
	return nil
}

func (f *fakeSystemLog) Info(v ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.infos = append(f.infos, fmt.Sprint(v...))
	return nil
}

func (f *fakeSystemLog) all() (errs, infos []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.errs), slices.Clone(f.infos)
}

// serviceOptions are valid options for a daemon whose servers don't answer.
func serviceOptions(t *testing.T) config.Options {
	dir := t.TempDir()
	csv := filepath.Join(dir, "users.csv")
	os.WriteFile(csv, []byte("EmailAddress,UserName,Password\nalice@example.com,alice,secret\n"), 0o600)
	o := config.Defaults()
	o.Source, o.Target = "imap+plain://127.0.0.1:1", "imap+plain://127.0.0.1:1"
	o.Mailboxes, o.Data, o.Config = csv, filepath.Join(dir, "data"), filepath.Join(dir, "mailferry.conf")
	return o
}

type exitRecorder struct {
	once gosync.Once
	code chan int
}

func newExitRecorder() *exitRecorder { return &exitRecorder{code: make(chan int, 1)} }

func (e *exitRecorder) exit(code int) { e.once.Do(func() { e.code <- code }) }

func readLog(t *testing.T, file string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

func TestServiceProgramStartStop(t *testing.T) {
	o := serviceOptions(t)
	logFile := filepath.Join(t.TempDir(), "log", "mailferry.log")
	sys := &fakeSystemLog{}
	ex := newExitRecorder()
	reload := make(chan struct{})
	p := &program{parent: context.Background(), opts: &o, logFile: LogFile{Path: logFile, MaxSizeMB: 1, MaxFiles: 2}, reload: reload, sys: sys, exit: ex.exit}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	reload <- struct{}{} // SIGHUP: re-read the list
	start := time.Now()
	if err := p.Stop(nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > serviceStopWait {
		t.Errorf("stop took %v", d)
	}
	p.closeLog()
	select {
	case code := <-ex.code:
		t.Errorf("exited with %d on a requested stop", code)
	default:
	}
	lines := readLog(t, logFile)
	text := strings.Join(lines, "\n")
	for _, want := range []string{`"msg":"mailferry service started"`, `"msg":"mailferry running"`, `"msg":"mailferry service stopped"`} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %s:\n%s", want, text)
		}
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, "{") || !strings.Contains(l, `"time":`) || !strings.Contains(l, `"level":`) {
			t.Errorf("not a JSON log line: %s", l)
		}
	}
	if strings.Contains(text, "secret") {
		t.Error("the log holds a password")
	}
	_, infos := sys.all()
	if len(infos) != 2 || !strings.HasPrefix(infos[0], "started") || infos[1] != "stopped" {
		t.Errorf("service manager's log: %q, want started and stopped", infos)
	}
}

func TestServiceProgramBadConfig(t *testing.T) {
	o := serviceOptions(t)
	o.Parallel = 0
	sys := &fakeSystemLog{}
	p := &program{parent: context.Background(), opts: &o, logFile: LogFile{Path: filepath.Join(t.TempDir(), "m.log"), MaxSizeMB: 1, MaxFiles: 1}, sys: sys, exit: newExitRecorder().exit}
	err := p.Start(nil)
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != ExitUsage {
		t.Fatalf("Start = %v, want ExitUsage", err)
	}
	if errs, _ := sys.all(); len(errs) != 1 || !strings.Contains(errs[0], "parallel") {
		t.Errorf("service manager's log: %q", errs)
	}
}

// A daemon that fails by itself makes the process exit non-zero, after
// saying why in the file and the service manager's log.
func TestServiceProgramFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	o := serviceOptions(t)
	o.HTTP = ln.Addr().String() // taken: the daemon's Run fails
	logFile := filepath.Join(t.TempDir(), "mailferry.log")
	sys := &fakeSystemLog{}
	ex := newExitRecorder()
	p := &program{parent: context.Background(), opts: &o, logFile: LogFile{Path: logFile, MaxSizeMB: 1, MaxFiles: 1}, sys: sys, exit: ex.exit}
	if err := p.Start(nil); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-ex.code:
		if code != ExitFatal {
			t.Errorf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no exit after the daemon failed")
	}
	if errs, _ := sys.all(); len(errs) != 1 || !strings.Contains(errs[0], "fatal error") || !strings.Contains(errs[0], "address already in use") {
		t.Errorf("service manager's log: %q", errs)
	}
	if text := strings.Join(readLog(t, logFile), "\n"); !strings.Contains(text, `"level":"error"`) || !strings.Contains(text, "fatal error") {
		t.Errorf("log file:\n%s", text)
	}
}

// The packages install packaging/users.csv.sample as the model of
// /etc/mailferry/users.csv: it must load as it is.
func TestServicePackagingSampleCSV(t *testing.T) {
	list, err := config.LoadMailboxes(filepath.Join("..", "packaging", "users.csv.sample"))
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Errorf("%d mailboxes, want 5", len(list))
	}
}
