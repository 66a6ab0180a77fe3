package main

import (
	"github.com/spf13/cobra"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/daemon"
)

// serviceCmd is `mailferry service install|uninstall|start|stop|restart|status`,
// plus the hidden `service run` that the service manager starts.
func serviceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "service",
		Short: "Install and control the daemon as a system service (systemd on Linux, a Windows service)",
		Long: `Install and control the daemon as a system service: a hardened systemd unit
on Linux (running as the user mailferry), a Windows service on Windows
(automatic start, restarted on failure). The service runs what
"mailferry run --config FILE" runs, logging JSON to a rotating file
(/var/log/mailferry/mailferry.log on Linux, mailferry.log in the data
directory on Windows) and its start, stop and fatal errors to the journal
or the event log.

The .deb and .rpm packages install the unit already: there, edit
/etc/mailferry/mailferry.conf and run "mailferry service start".`,
	}
	cmd.AddCommand(serviceInstallCmd())
	for _, c := range []struct{ action, short string }{
		{"uninstall", "Stop the service if it runs, then remove it (data, logs and config stay)"},
		{"start", "Start the service"},
		{"stop", "Stop the service gracefully"},
		{"restart", "Restart the service (re-reads the config file)"},
		{"status", "Tell whether the service runs"},
	} {
		action := c.action
		cmd.AddCommand(&cobra.Command{
			Use:   action,
			Short: c.short,
			Args:  cobra.NoArgs,
			RunE: func(*cobra.Command, []string) error {
				return daemon.ServiceControl(action, streams())
			},
		})
	}
	cmd.AddCommand(serviceRunCmd())
	return cmd
}

func serviceInstallCmd() *cobra.Command {
	var s daemon.ServiceSetup
	cmd := &cobra.Command{
		Use:   "install --config FILE",
		Short: "Install the daemon as a service that starts at boot and restarts on failure",
		Long: `Install the daemon as a service that runs
    mailferry service run --config FILE
at boot and restarts it when it fails. FILE is checked first and made
absolute. On Linux (as root, with systemd) this creates the system user
(--user) when it is missing and the data directory the config names, and
writes the hardened unit /etc/systemd/system/mailferry.service. Refuses
when the service is already installed.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return daemon.ServiceInstall(s, streams())
		},
	}
	cmd.Flags().StringVar(&s.Config, "config", "", "the service's config `file` (required)")
	cmd.Flags().StringVar(&s.User, "user", daemon.DefaultServiceUser, "Linux: the system `user` the service runs as, created if missing")
	cmd.MarkFlagRequired("config")
	return cmd
}

// serviceRunCmd is what the service manager starts: `mailferry run` with
// the service's logging, under kardianos/service's control.
func serviceRunCmd() *cobra.Command {
	o := config.Defaults()
	lf := daemon.LogFile{MaxSizeMB: daemon.DefaultLogMaxSizeMB, MaxFiles: daemon.DefaultLogMaxFiles}
	cmd := &cobra.Command{
		Use:    "run",
		Short:  "Run the daemon as the service manager starts it (not by hand: use mailferry run)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// RunService resolves o itself, to report a bad config to the
			// service manager's log.
			return daemon.RunService(cmd.Context(), cmd.Flags(), &o, lf, reloadSignals())
		},
	}
	config.RegisterFlags(cmd.Flags(), &o) // log_file, log_max_size_mb and log_max_files among them
	return cmd
}
