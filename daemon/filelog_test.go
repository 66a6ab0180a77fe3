package daemon

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

func TestServiceFileLogger(t *testing.T) {
	file := filepath.Join(t.TempDir(), "logs", "mailferry.log")
	sys := &fakeSystemLog{}
	log, closeLog, err := NewFileLogger(LogFile{Path: file, MaxSizeMB: 1, MaxFiles: 2}, "info", sys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Fatalf("the file is not created up front: %v", err)
	}
	log.Debug("not logged")
	log.Info("mailbox synced", zap.String("mailbox", "alice@example.com"), zap.Int("copied", 3))
	mlog := log.With(zap.String("mailbox", "bob@example.com"))
	mlog.Error("mailbox pass failed", zap.String("folder", "INBOX"), zap.NamedError("err", errors.New("connection refused")))
	for range 20 {
		log.Error("same error over and over")
	}
	if err := closeLog(); err != nil {
		t.Fatal(err)
	}

	lines := readLog(t, file)
	if len(lines) != 22 {
		t.Fatalf("%d lines, want 22 (info, error, 20 repeated errors):\n%s", len(lines), strings.Join(lines, "\n"))
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatal(err)
	}
	if first["msg"] != "mailbox synced" || first["mailbox"] != "alice@example.com" || first["level"] != "info" || first["time"] == nil {
		t.Errorf("first line %v", first)
	}
	if second["mailbox"] != "bob@example.com" || second["folder"] != "INBOX" || second["err"] != "connection refused" {
		t.Errorf("second line %v", second)
	}

	errs, infos := sys.all()
	if len(infos) != 0 {
		t.Errorf("info reached the service manager's log: %q", infos)
	}
	if len(errs) != 1+systemLogBurst {
		t.Fatalf("%d errors in the service manager's log, want %d (one, then a burst of the repeated one): %q", len(errs), 1+systemLogBurst, errs)
	}
	for _, want := range []string{"mailbox pass failed", `"mailbox": "bob@example.com"`, `"folder": "INBOX"`, `"err": "connection refused"`} {
		if !strings.Contains(errs[0], want) {
			t.Errorf("service manager's log line %q lacks %s", errs[0], want)
		}
	}
	if strings.Contains(errs[0], "\n") {
		t.Errorf("multi-line entry %q", errs[0])
	}
}

func TestServiceFileLoggerRotates(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "mailferry.log")
	log, closeLog, err := NewFileLogger(LogFile{Path: file, MaxSizeMB: 1, MaxFiles: 2}, "info", nil)
	if err != nil {
		t.Fatal(err)
	}
	pad := strings.Repeat("x", 1000)
	for i := range 5000 { // about 5 MB: four rotations
		log.Info("filler", zap.Int("i", i), zap.String("pad", pad))
	}
	closeLog()
	// lumberjack deletes old files in the background.
	var names []string
	for deadline := time.Now().Add(5 * time.Second); ; {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		names = names[:0]
		for _, e := range entries {
			names = append(names, e.Name())
			if fi, _ := e.Info(); fi.Size() > 1<<20 {
				t.Errorf("%s has %d bytes, over 1 MB", e.Name(), fi.Size())
			}
		}
		if len(names) == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(names) != 3 {
		t.Errorf("files %v, want the current one and 2 rotated", names)
	}
}

func TestServiceFileLoggerRejects(t *testing.T) {
	dir := t.TempDir()
	for _, lf := range []LogFile{
		{Path: "", MaxSizeMB: 1, MaxFiles: 1},
		{Path: filepath.Join(dir, "a.log"), MaxSizeMB: 0, MaxFiles: 1},
		{Path: filepath.Join(dir, "a.log"), MaxSizeMB: 1, MaxFiles: 0},
	} {
		if _, _, err := NewFileLogger(lf, "info", nil); err == nil {
			t.Errorf("%+v accepted", lf)
		}
	}
	if _, _, err := NewFileLogger(LogFile{Path: filepath.Join(dir, "a.log"), MaxSizeMB: 1, MaxFiles: 1}, "loud", nil); err == nil {
		t.Error("level loud accepted")
	}
	// A file that can't be opened fails now, not at the first line.
	os.WriteFile(filepath.Join(dir, "file"), nil, 0o600)
	if _, _, err := NewFileLogger(LogFile{Path: filepath.Join(dir, "file", "a.log"), MaxSizeMB: 1, MaxFiles: 1}, "info", nil); err == nil {
		t.Error("a log file under a plain file accepted")
	}
}
