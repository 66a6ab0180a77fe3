package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/mailferry/mailferry/config"
)

// Defaults of the service's log file (config keys log_max_size_mb and
// log_max_files).
const (
	DefaultLogMaxSizeMB = 100
	DefaultLogMaxFiles  = 5
)

// LogFile is where the service writes its JSON log, and how it rotates.
type LogFile struct {
	Path      string // the current file; rotated ones sit beside it, named with their rotation time
	MaxSizeMB int    // rotate when the current file would grow past this many megabytes
	MaxFiles  int    // rotated files kept besides the current one; older ones are deleted
}

// SystemLog is the service manager's log: the journal (through syslog) on
// Linux, the event log on Windows. kardianos/service's Logger satisfies it.
type SystemLog interface {
	Error(v ...any) error
	Info(v ...any) error
}

// systemLogBurst is how many errors with the same message reach the
// service manager's log per minute; the file gets them all.
const systemLogBurst = 5

// NewFileLogger logs JSON lines (the same fields as NewLogger's) at level
// and above to lf.Path, rotated by size, and copies every error to sys (at
// most systemLogBurst a minute per message, so a failing mailbox can't
// flood the journal or the event log). The file is opened now, so a path
// the service can't write fails here rather than at the first log line.
// close flushes and closes the file.
func NewFileLogger(lf LogFile, level string, sys SystemLog) (log *zap.Logger, close func() error, err error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case lf.Path == "":
		return nil, nil, errors.New("log file: no path")
	case lf.MaxSizeMB < 1:
		return nil, nil, fmt.Errorf("log_max_size_mb: must be at least 1, got %d", lf.MaxSizeMB)
	case lf.MaxFiles < 1:
		// lumberjack reads 0 as "keep every file".
		return nil, nil, fmt.Errorf("log_max_files: must be at least 1, got %d", lf.MaxFiles)
	}
	if err := os.MkdirAll(filepath.Dir(lf.Path), 0o750); err != nil {
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	lj := &lumberjack.Logger{
		Filename:   lf.Path,
		MaxSize:    lf.MaxSizeMB,
		MaxBackups: lf.MaxFiles,
		LocalTime:  true,
	}
	if _, err := lj.Write(nil); err != nil { // opens (or creates) the file
		return nil, nil, fmt.Errorf("log file: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "time"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	file := zapcore.NewCore(zapcore.NewJSONEncoder(encCfg), zapcore.AddSync(lj), lvl)
	core := file
	if sys != nil {
		core = zapcore.NewTee(file, zapcore.NewSamplerWithOptions(newSystemCore(sys), time.Minute, systemLogBurst, 0))
	}
	log = zap.New(core, zap.ErrorOutput(zapcore.Lock(os.Stderr)))
	return log, func() error {
		log.Sync()
		return lj.Close()
	}, nil
}

// systemCore writes errors to the service manager's log as one line:
// the message, then the fields as JSON.
type systemCore struct {
	enc zapcore.Encoder
	sys SystemLog
}

func newSystemCore(sys SystemLog) *systemCore {
	cfg := zapcore.EncoderConfig{
		MessageKey:       "msg",
		NameKey:          "logger",
		ConsoleSeparator: " ",
		EncodeDuration:   zapcore.StringDurationEncoder,
		EncodeTime:       zapcore.ISO8601TimeEncoder,
	}
	return &systemCore{enc: zapcore.NewConsoleEncoder(cfg), sys: sys}
}

func (c *systemCore) Enabled(l zapcore.Level) bool { return l >= zapcore.ErrorLevel }

func (c *systemCore) With(fields []zapcore.Field) zapcore.Core {
	clone := &systemCore{enc: c.enc.Clone(), sys: c.sys}
	for _, f := range fields {
		f.AddTo(clone.enc)
	}
	return clone
}

func (c *systemCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *systemCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	buf, err := c.enc.EncodeEntry(ent, fields)
	if err != nil {
		return err
	}
	line := strings.TrimRight(buf.String(), "\n")
	buf.Free()
	return c.sys.Error(line)
}

func (c *systemCore) Sync() error { return nil }

// stderrLog stands in for the service manager's log where there is none
// (no syslog socket in a container): under systemd, stderr goes to the
// journal too.
type stderrLog struct{}

func (stderrLog) Error(v ...any) error {
	_, err := fmt.Fprintln(os.Stderr, append([]any{"mailferry: error:"}, v...)...)
	return err
}

func (stderrLog) Info(v ...any) error {
	_, err := fmt.Fprintln(os.Stderr, append([]any{"mailferry:"}, v...)...)
	return err
}

// logFileBesideData is the log file in the data directory (or beside the
// config file): the default where no system log directory is the custom.
func logFileBesideData(o *config.Options) string {
	if o.Data != "" {
		return filepath.Join(o.Data, "mailferry.log")
	}
	return filepath.Join(filepath.Dir(o.Config), "mailferry.log")
}
