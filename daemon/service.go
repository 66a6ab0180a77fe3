package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/kardianos/service"
	"github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
)

// ServiceName names the service everywhere: the systemd unit
// mailferry.service, the Windows service and its event log source.
const ServiceName = "mailferry"

// DefaultServiceUser is the Linux system user the service runs as.
const DefaultServiceUser = "mailferry"

// serviceStopWait bounds how long a service stop waits for the daemon:
// its passes get stopGrace, then the store is closed. Windows allows 20 s.
const serviceStopWait = 15 * time.Second

// ServiceSetup is what `mailferry service install` takes.
type ServiceSetup struct {
	Config     string // the config file (required); made absolute
	User       string // Linux: the system user the daemon runs as, created if missing; default DefaultServiceUser
	Executable string // the mailferry binary the service runs; "" = this one
}

// serviceArgs are the arguments the service manager starts mailferry with.
func serviceArgs(configFile string) []string {
	return []string{"service", "run", "--config", configFile}
}

func serviceConfig(args []string) *service.Config {
	return &service.Config{
		Name:        ServiceName,
		DisplayName: "mailferry",
		Description: "Keeps IMAP mailboxes in sync with Office 365 during a migration, and proxies IMAP meanwhile.",
		Arguments:   args,
		Option:      service.KeyValue{},
	}
}

// noProgram stands in for the daemon when the service is only controlled.
type noProgram struct{}

func (noProgram) Start(service.Service) error { return nil }
func (noProgram) Stop(service.Service) error  { return nil }

// ServiceInstall is `mailferry service install --config FILE`: it checks the
// config, refuses when the service is already installed, prepares the
// system (Linux: the user, the data directory) and registers a service that
// runs `mailferry service run --config FILE` at boot and restarts it when
// it fails.
func ServiceInstall(s ServiceSetup, out Streams) error {
	if s.Config == "" {
		return &ExitError{Code: ExitUsage, Err: errors.New("--config is required: the service reads its settings from that file")}
	}
	abs, err := filepath.Abs(s.Config)
	if err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	s.Config = abs
	o := config.Defaults()
	o.Config = abs
	if err := config.LoadFile(abs, &o); err != nil {
		return &ExitError{Code: ExitUsage, Err: err}
	}
	if err := o.Validate(); err != nil {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%s: %w\n(check it with: mailferry config check %s)", abs, err, abs)}
	}
	if s.User == "" {
		s.User = DefaultServiceUser
	}
	if s.Executable == "" {
		if s.Executable, err = os.Executable(); err != nil {
			return Fatal(err)
		}
	}
	if s.Executable, err = filepath.Abs(s.Executable); err != nil {
		return Fatal(err)
	}
	if real, err := filepath.EvalSymlinks(s.Executable); err == nil {
		s.Executable = real
	}
	if err := checkPlatform(); err != nil {
		return err
	}
	cfg := serviceConfig(serviceArgs(abs))
	cfg.Executable = s.Executable
	svc, err := service.New(noProgram{}, cfg)
	if err != nil {
		return Fatal(err)
	}
	return install(svc, cfg, s, &o, out)
}

// install is ServiceInstall once the config is read: svc is the service
// manager's view (a fake in tests) and cfg its configuration, which
// prepareInstall completes.
func install(svc service.Service, cfg *service.Config, s ServiceSetup, o *config.Options, out Streams) error {
	where, ok, err := installed(svc)
	if err != nil {
		return Fatal(fmt.Errorf("can't tell whether the %s service is installed: %w", ServiceName, err))
	}
	if ok {
		return Fatal(fmt.Errorf("the %s service is already installed (%s): run `mailferry service uninstall` first; "+
			"to apply a changed config, run `mailferry service restart`", ServiceName, where))
	}
	if err := prepareInstall(cfg, s, o, out); err != nil {
		return err
	}
	if err := svc.Install(); err != nil {
		return Fatal(fmt.Errorf("installing the %s service: %w", ServiceName, err))
	}
	fmt.Fprintf(out.Stdout, "installed the %s service (%s): it runs %s %s\n", ServiceName, svc.Platform(), s.Executable, quoteArgs(cfg.Arguments))
	fmt.Fprintln(out.Stdout, "start it with: mailferry service start")
	return nil
}

// installed reports whether the service is installed, and where.
func installed(svc service.Service) (string, bool, error) {
	if unit := installedUnitFile(); unit != "" {
		return unit, true, nil
	}
	_, err := svc.Status()
	switch {
	case err == nil:
		return svc.Platform(), true, nil
	case errors.Is(err, service.ErrNotInstalled):
		return "", false, nil
	}
	return "", false, err
}

// ServiceControl is `mailferry service uninstall|start|stop|restart|status`.
func ServiceControl(action string, out Streams) error {
	if err := checkPlatform(); err != nil {
		return err
	}
	svc, err := service.New(noProgram{}, serviceConfig(nil))
	if err != nil {
		return Fatal(err)
	}
	return control(svc, action, out)
}

func control(svc service.Service, action string, out Streams) error {
	done := func(what string, err error) error {
		if err != nil {
			return Fatal(fmt.Errorf("%s the %s service: %w", what, ServiceName, err))
		}
		return nil
	}
	switch action {
	case "start":
		return done("starting", svc.Start())
	case "stop":
		return done("stopping", svc.Stop())
	case "restart":
		return done("restarting", svc.Restart())
	case "status":
		st, err := svc.Status()
		switch {
		case errors.Is(err, service.ErrNotInstalled):
			return Fatal(fmt.Errorf("the %s service is not installed", ServiceName))
		case err != nil:
			fmt.Fprintf(out.Stdout, "%s (%s): %v\n", ServiceName, svc.Platform(), err)
			return Fatal(err)
		}
		fmt.Fprintf(out.Stdout, "%s (%s): %s\n", ServiceName, svc.Platform(), statusWord(st))
		return nil
	case "uninstall":
		return uninstall(svc, out)
	}
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf("unknown service action %q", action)}
}

func statusWord(st service.Status) string {
	switch st {
	case service.StatusRunning:
		return "running"
	case service.StatusStopped:
		return "stopped"
	}
	return "unknown"
}

// uninstall stops the service if it runs, then removes it. The data
// directory, the logs and the service user stay.
func uninstall(svc service.Service, out Streams) error {
	if pkg := packagedUnitFile(); pkg != "" {
		return Fatal(fmt.Errorf("the %s service was installed by a package (%s): remove the package instead "+
			"(apt remove mailferry, dnf remove mailferry), or stop it with `mailferry service stop`", ServiceName, pkg))
	}
	st, err := svc.Status()
	if errors.Is(err, service.ErrNotInstalled) && installedUnitFile() == "" {
		return Fatal(fmt.Errorf("the %s service is not installed", ServiceName))
	}
	if err == nil && st == service.StatusRunning {
		if err := svc.Stop(); err != nil {
			return Fatal(fmt.Errorf("stopping the %s service before removing it: %w", ServiceName, err))
		}
		fmt.Fprintf(out.Stdout, "stopped the %s service\n", ServiceName)
	}
	if err := svc.Uninstall(); err != nil {
		return Fatal(fmt.Errorf("removing the %s service: %w", ServiceName, err))
	}
	fmt.Fprintf(out.Stdout, "removed the %s service; its data directory, logs and config are kept\n", ServiceName)
	return nil
}

// RunService is the hidden `mailferry service run` that the service manager
// starts: the daemon of `mailferry run`, logging JSON to a rotating file
// (lf; lf.Path "" means DefaultLogFile), with start, stop and fatal errors
// also in the service manager's log. o is resolved against its config file
// here (flags in fs win), so that a bad config reaches that log too. A
// service stop (SIGTERM on Linux) stops the daemon gracefully; when the
// daemon fails by itself the process exits with ExitFatal so that the
// service manager restarts it.
func RunService(ctx context.Context, fs *pflag.FlagSet, o *config.Options, lf LogFile, reload <-chan struct{}) error {
	p := &program{parent: ctx, fs: fs, opts: o, logFile: lf, reload: reload, exit: os.Exit, sys: stderrLog{}}
	svc, err := service.New(p, serviceConfig(nil))
	if err != nil {
		return Fatal(err)
	}
	if l, err := svc.Logger(nil); err == nil {
		p.sys = l
	}
	err = svc.Run()
	if p.closeLog != nil {
		p.closeLog()
	}
	if err != nil {
		var ee *ExitError
		if !errors.As(err, &ee) {
			err = Fatal(err)
		}
		return err
	}
	return nil
}

// program is the daemon as kardianos/service drives it: Start returns once
// the daemon runs, Stop once it has stopped.
type program struct {
	parent  context.Context
	fs      *pflag.FlagSet // nil: opts is complete
	opts    *config.Options
	logFile LogFile
	reload  <-chan struct{}
	sys     SystemLog
	exit    func(code int)

	log      *zap.Logger
	closeLog func() error
	cancel   context.CancelFunc
	done     chan struct{} // closed when the daemon's Run returned
	runErr   error         // what it returned; read after done
	stopping atomic.Bool
}

// Start reads the config, opens the log file and the store, and starts the
// daemon. What fails here is in the service manager's log.
func (p *program) Start(service.Service) error {
	if p.fs != nil {
		if err := config.Resolve(p.fs, p.opts); err != nil {
			p.sys.Error("not started: " + err.Error())
			return &ExitError{Code: ExitUsage, Err: err}
		}
	}
	if err := p.opts.Validate(); err != nil {
		p.sys.Error("not started: config " + p.opts.Config + ": " + err.Error())
		return &ExitError{Code: ExitUsage, Err: err}
	}
	lf := p.logFile
	if p.opts.LogFile != "" {
		lf.Path = p.opts.LogFile
	}
	if p.opts.LogMaxSizeMB > 0 {
		lf.MaxSizeMB = p.opts.LogMaxSizeMB
	}
	if p.opts.LogMaxFiles > 0 {
		lf.MaxFiles = p.opts.LogMaxFiles
	}
	if lf.Path == "" {
		lf.Path = DefaultLogFile(p.opts)
	}
	var err error
	if p.log, p.closeLog, err = NewFileLogger(lf, p.opts.LogLevel, p.sys); err != nil {
		p.sys.Error("not started: " + err.Error())
		return Fatal(err)
	}
	d, err := New(p.opts, p.log)
	if err != nil {
		// Logged at Error level: in the file and the service manager's log.
		p.log.Error("mailferry not started", zap.String("config", p.opts.Config), zap.NamedError("err", err))
		return err
	}
	ctx, cancel := context.WithCancel(p.parent)
	p.cancel, p.done = cancel, make(chan struct{})
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-p.reload:
				if !ok {
					return
				}
				if err := d.Reload(); err != nil {
					p.log.Error("reload", zap.NamedError("err", err))
				}
			}
		}
	}()
	go func() {
		p.runErr = d.Run(ctx)
		close(p.done)
		if p.stopping.Load() || p.parent.Err() != nil {
			return // asked to stop
		}
		err := p.runErr
		if err == nil {
			err = errors.New("the daemon stopped unasked")
		}
		p.log.Error("mailferry stopped by a fatal error; the service manager restarts it", zap.NamedError("err", err))
		p.closeLog()
		p.exit(ExitFatal)
	}()
	p.log.Info("mailferry service started", zap.String("config", p.opts.Config), zap.String("log_file", lf.Path), zap.Int("pid", os.Getpid()))
	p.sys.Info("started, config " + p.opts.Config + ", log " + lf.Path)
	return nil
}

func (p *program) Stop(service.Service) error {
	p.stopping.Store(true)
	p.log.Info("service stop: stopping")
	p.cancel()
	select {
	case <-p.done:
		if p.runErr != nil {
			p.log.Error("mailferry stopped with an error", zap.NamedError("err", p.runErr))
		}
	case <-time.After(serviceStopWait):
		p.log.Warn("the daemon did not stop in time; exiting anyway (the next start resolves what was in flight)")
	}
	p.log.Info("mailferry service stopped")
	p.sys.Info("stopped")
	return nil
}
