//go:build !linux && !windows

package daemon

import (
	"errors"

	"github.com/kardianos/service"

	"github.com/mailferry/mailferry/config"
)

// DefaultLogFile is where the service logs unless told otherwise.
func DefaultLogFile(o *config.Options) string { return logFileBesideData(o) }

func checkPlatform() error {
	return Fatal(errors.New("mailferry service supports Linux (systemd) and Windows; run `mailferry run --config FILE` under this system's supervisor"))
}

func installedUnitFile() string { return "" }
func packagedUnitFile() string  { return "" }

func prepareInstall(*service.Config, ServiceSetup, *config.Options, Streams) error {
	return checkPlatform()
}
