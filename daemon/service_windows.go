package daemon

import (
	"errors"

	"github.com/kardianos/service"

	"github.com/mailferry/mailferry/config"
)

// DefaultLogFile is where the service logs unless told otherwise: beside
// the migration's state, in the data directory.
func DefaultLogFile(o *config.Options) string { return logFileBesideData(o) }

// checkPlatform: every Windows has the service control manager.
func checkPlatform() error { return nil }

// Windows keeps no unit files: the service control manager knows.
func installedUnitFile() string { return "" }
func packagedUnitFile() string  { return "" }

// prepareInstall sets the Windows service up to start automatically (a
// little after boot, when the network is up) and to be restarted by the
// service control manager 10 s after each failure. It runs as LocalSystem.
func prepareInstall(cfg *service.Config, s ServiceSetup, _ *config.Options, _ Streams) error {
	if s.User != DefaultServiceUser {
		return &ExitError{Code: ExitUsage, Err: errors.New("--user: the Windows service runs as LocalSystem; choose another account in services.msc")}
	}
	cfg.Option[service.StartType] = service.ServiceStartAutomatic
	cfg.Option["DelayedAutoStart"] = true
	cfg.Option[service.OnFailure] = service.OnFailureRestart
	cfg.Option[service.OnFailureDelayDuration] = "10s"
	cfg.Option[service.OnFailureResetPeriod] = 24 * 60 * 60 // seconds without failure before the count starts again
	return nil
}
