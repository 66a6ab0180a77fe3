package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/config"
	"github.com/mailferry/mailferry/imapconn"
	"github.com/mailferry/mailferry/o365"
	"github.com/mailferry/mailferry/store"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Exit codes of the one-shot commands, as documented in the README.
const (
	ExitOK         = 0 // everything was copied (or verified equal)
	ExitFatal      = 1 // nothing or not everything ran: bad options, store locked, …
	ExitUsage      = 2 // wrong flags or arguments
	ExitIncomplete = 3 // the pass finished, but messages were skipped or mailboxes failed
)

// ExitError carries an exit code up to main.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Fatal wraps err for exit code 1.
func Fatal(err error) error { return &ExitError{Code: ExitFatal, Err: err} }

// engineOptions turns the admin's options into the engine's.
func engineOptions(o *config.Options, log *zap.Logger) (mfsync.Options, error) {
	var errs []error
	src, err := endpoint(o.Source, o.SourceCA, o.SourceInsecureSkipVerify, o.AllowPlaintext)
	if err != nil {
		errs = append(errs, fmt.Errorf("source: %w", err))
	}
	tgt, err := endpoint(o.Target, o.TargetCA, o.TargetInsecureSkipVerify, o.AllowPlaintext)
	if err != nil {
		errs = append(errs, fmt.Errorf("target: %w", err))
	}
	rename, err := mfsync.ParseMap(o.Map)
	if err != nil {
		errs = append(errs, err)
	}
	rules := mfsync.FolderRules{Map: rename}
	for _, re := range o.Include {
		r, err := regexp.Compile(re)
		if err != nil {
			errs = append(errs, fmt.Errorf("include %q: %w", re, err))
			continue
		}
		rules.Include = append(rules.Include, r)
	}
	for _, re := range o.Exclude {
		r, err := regexp.Compile(re)
		if err != nil {
			errs = append(errs, fmt.Errorf("exclude %q: %w", re, err))
			continue
		}
		rules.Exclude = append(rules.Exclude, r)
	}
	var login mfsync.TargetLogin
	if o.O365Tenant != "" {
		src, err := o365.NewTokenSource(o365.Options{TenantID: o.O365Tenant, ClientID: o.O365ClientID,
			ClientSecret: o.O365ClientSecret, CertificateFile: o.O365Certificate, KeyFile: o.O365Key, TokenURL: o.O365TokenURL})
		if err != nil {
			errs = append(errs, fmt.Errorf("office 365: %w", err))
		} else {
			login = o365.Login(src)
		}
		if o.Config != "" && o.O365ClientSecret != "" {
			if err := o365.CheckSecretFilePermissions(o.Config); err != nil {
				log.Warn("config file holds a secret", zap.NamedError("err", err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return mfsync.Options{}, err
	}
	return mfsync.Options{
		TargetLogin:           login,
		Exchange:              o.O365Tenant != "" || isExchangeHost(tgt.Host),
		DropMDNSent:           o.DropMDNSent,
		DisarmReadReceipts:    o.DisarmReadReceipts,
		NoMultiAppend:         o.NoMultiAppend,
		Source:                src,
		Target:                tgt,
		Parallel:              o.Parallel,
		ConnectionsPerMailbox: o.ConnectionsPerMailbox,
		SourceConnections:     o.SourceConnections,
		TargetConnections:     o.TargetConnections,
		Folders:               rules,
		MaxItems:              o.MaxItems,
		MaxMessageSize:        int64(o.MaxMessageSize),
		Since:                 o.Since.Time,
		Before:                o.Before.Time,
		Log:                   log,
	}, nil
}

func endpoint(url, caFile string, insecure, allowPlain bool) (imapconn.Endpoint, error) {
	ep, err := imapconn.ParseURL(url, allowPlain)
	if err != nil {
		return ep, err
	}
	if caFile != "" {
		if ep.TLSConfig, err = imapconn.LoadCA(caFile); err != nil {
			return ep, err
		}
	}
	ep.InsecureSkipVerify = insecure
	return ep, nil
}

// dataDir checks the data directory, creating it.
func dataDir(dir string) error {
	if dir == "" {
		return errors.New("no data directory: give --data")
	}
	if err := os.MkdirAll(filepath.Clean(dir), 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	return nil
}

// OpenStore opens the Badger store in the data directory, creating it.
func OpenStore(dir string, log *zap.Logger) (store.Store, error) {
	if err := dataDir(dir); err != nil {
		return nil, err
	}
	return openStore(dir, log)
}

// openStore opens the store in a data directory that exists. A status or
// report command that found no daemon holds the store for a moment: it
// waits for it rather than fail.
func openStore(dir string, log *zap.Logger) (store.Store, error) {
	var st store.Store
	var err error
	for deadline := time.Now().Add(storeLockWait); ; {
		st, err = store.Open(filepath.Join(dir, "store"), log)
		if err == nil || !strings.Contains(err.Error(), "lock") || time.Now().After(deadline) {
			return st, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

const storeLockWait = 5 * time.Second

// isExchangeHost recognises Exchange Online's IMAP endpoints.
func isExchangeHost(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, suffix := range []string{"office365.com", "outlook.com", "office365.us", "partner.outlook.cn"} {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return true
		}
	}
	return false
}
