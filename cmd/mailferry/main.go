// Command mailferry moves an organisation's mail from its old IMAP server
// into Office 365 without a flag day. This file only maps flags to calls;
// the work is in the daemon, sync, proxy and store packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/daemon"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// A second signal forces the exit that the first one started.
		<-ctx.Done()
		stop()
		force := make(chan os.Signal, 1)
		signal.Notify(force, os.Interrupt, syscall.SIGTERM)
		<-force
		fmt.Fprintln(os.Stderr, "mailferry: forced exit")
		os.Exit(daemon.ExitFatal)
	}()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "mailferry:", err)
	var ee *daemon.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	os.Exit(daemon.ExitUsage) // cobra's own errors: unknown flag or command
}

func streams() daemon.Streams { return daemon.Streams{Stdout: os.Stdout, Stderr: os.Stderr} }

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "mailferry",
		Short:         "Move mailboxes from an old IMAP server into Office 365, without a flag day",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serviceCmd(), syncCmd(), verifyCmd(), preflightCmd(), runCmd(), proxyCmd(), cutoverCmd(), statusCmd(), reportCmd(), configCmd(), demoCmd())
	return root
}

func syncCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "sync",
		Short: "Copy every mailbox of the list from the source to the target once; later runs copy only what changed",
		Long: `Copy every mailbox of the list from the source to the target once, then exit.
Run it again and it copies only what changed since.

Exit codes: 0 everything copied, 3 the pass finished but messages were
skipped or mailboxes failed, 1 fatal error, 2 bad flags or config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.Sync(cmd.Context(), &o, streams())
		},
	}
	config.RegisterFlags(cmd.Flags(), &o)
	return cmd
}

func verifyCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Compare every mailbox's folders on source and target, changing nothing",
		Long: `Compare every folder of every mailbox on the source with its target folder
by message identity and date, and list missing and unexpected messages.
Takes the same flags as sync. Exit codes: 0 equal, 3 differences found,
1 fatal error, 2 bad flags or config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.Verify(cmd.Context(), &o, streams())
		},
	}
	config.RegisterFlags(cmd.Flags(), &o)
	return cmd
}

func preflightCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "preflight",
		Short: "Check every mailbox before migrating: logins, rights, sizes, folder names; copies nothing",
		Long: `Check every mailbox of the list without copying anything: log in to source
and target, check that folders can be created on the target, count items and
bytes per folder, list messages over the size limit, folders whose names the
target won't take as they are, mailboxes over the item limit, and estimate the
volume to copy. Takes the same flags as sync. Exit codes: 0 every mailbox can
be migrated, 3 some cannot, 1 fatal error, 2 bad flags or config.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.Preflight(cmd.Context(), &o, streams())
		},
	}
	config.RegisterFlags(cmd.Flags(), &o)
	return cmd
}

func runCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon in the foreground: keep every mailbox in sync, serve status",
		Long: `Run the daemon in the foreground: every mailbox of the list is synced again
every --sync-interval, the list is re-read when it changes (or on SIGHUP),
and status, report and cutover reach the daemon through its data directory.
SIGINT or SIGTERM stop it gracefully; a second one forces it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.Run(cmd.Context(), &o, streams(), reloadSignals(), false)
		},
	}
	config.RegisterFlags(cmd.Flags(), &o)
	return cmd
}

func proxyCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "proxy",
		Short: "Run only the IMAP proxy: users reach the old server until their cutover, then Office 365",
		Long: `Run only the IMAP proxy (no syncing; mailferry run does both). Users point
their mail clients at it with the login they had on the old server. Before
their cutover they see the old server, after it the target. cutover,
status and report reach it through the data directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.Run(cmd.Context(), &o, streams(), reloadSignals(), true)
		},
	}
	config.RegisterFlags(cmd.Flags(), &o)
	return cmd
}

func cutoverCmd() *cobra.Command {
	o := config.Defaults()
	var req daemon.CutoverRequest
	var batch string
	cmd := &cobra.Command{
		Use:   "cutover [MAILBOX...]",
		Short: "Send mailboxes' users to the target: hold logins, end sessions, final sync, flip the route",
		Long: `Cut mailboxes over to the target, one after the other: new logins of the
user wait (NO [UNAVAILABLE]), open sessions get BYE, a final delta sync runs,
the route flips in the store, and logins go to the target from then on.
--rollback sends users back to the source. Works through the running daemon
(run or proxy), or on its own when none runs. Exit codes: 0 all done, 3 some
cutovers failed (those mailboxes stay where they were), 1 fatal, 2 usage.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Here --mailboxes names a batch, not the list: resolve the
			// config file against the other flags only.
			fs := pflag.NewFlagSet("cutover", pflag.ContinueOnError)
			for _, name := range []string{"config", "data", "json"} {
				fs.AddFlag(cmd.Flags().Lookup(name))
			}
			if err := config.Resolve(fs, &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			req.Mailboxes = args
			if batch != "" {
				list, err := config.LoadMailboxes(batch)
				if err != nil {
					return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
				}
				for _, mb := range list {
					req.Mailboxes = append(req.Mailboxes, mb.Email)
				}
			}
			return daemon.CutoverCmd(cmd.Context(), &o, req, streams())
		},
	}
	registerStoreFlags(cmd, &o)
	cmd.Flags().BoolVar(&req.All, "all", false, "cut over every mailbox of the list")
	cmd.Flags().BoolVar(&req.Rollback, "rollback", false, "send the users back to the source")
	cmd.Flags().StringVar(&batch, "mailboxes", "", "cut over the mailboxes of this `CSV` (same format as the mailbox list)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the results as JSON")
	return cmd
}

func statusCmd() *cobra.Command {
	o := config.Defaults()
	cmd := &cobra.Command{
		Use:   "status [MAILBOX]",
		Short: "Show where every mailbox stands (from the running daemon, or the store)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			only := ""
			if len(args) == 1 {
				only = args[0]
			}
			return daemon.Status(cmd.Context(), &o, only, streams())
		},
	}
	registerStoreFlags(cmd, &o)
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print the status as JSON (stable, versioned)")
	return cmd
}

func reportCmd() *cobra.Command {
	o := config.Defaults()
	var format string
	cmd := &cobra.Command{
		Use:   "report",
		Short: "Print the migration report per mailbox and folder, with every skipped message",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := config.Resolve(cmd.Flags(), &o); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			return daemon.ReportCmd(cmd.Context(), &o, format, streams())
		},
	}
	registerStoreFlags(cmd, &o)
	cmd.Flags().StringVar(&format, "format", "csv", "csv or json")
	return cmd
}

// registerStoreFlags are the flags of commands that only need to find the
// data directory.
func registerStoreFlags(cmd *cobra.Command, o *config.Options) {
	cmd.Flags().StringVar(&o.Config, "config", "", "read settings from this TOML `file`")
	cmd.Flags().StringVar(&o.Data, "data", "", "the data `directory` of the migration")
}

func demoCmd() *cobra.Command {
	var keep bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Migrate three demo mailboxes between in-memory servers; needs no server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon.Demo(cmd.Context(), streams(), keep)
		},
	}
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the demo servers running until Ctrl-C, to look at them with a mail client")
	return cmd
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the config file"}
	cmd.AddCommand(&cobra.Command{
		Use:   "check FILE",
		Short: "Report every error in a config file (and the mailbox list it names) at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := config.Check(args[0]); err != nil {
				return &daemon.ExitError{Code: daemon.ExitUsage, Err: err}
			}
			fmt.Println(args[0] + ": ok")
			return nil
		},
	})
	return cmd
}
