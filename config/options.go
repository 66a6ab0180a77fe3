package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Options are everything `mailferry sync` (and later `verify`, `proxy`, `run`) take.
type Options struct {
	Source, Target                                     string // server URLs: imaps://host[:993], imap://host[:143] (STARTTLS), imap+plain://host:port
	Mailboxes                                          string // CSV path
	Data                                               string // data directory (Badger store)
	SourceCA, TargetCA                                 string // PEM files
	SourceInsecureSkipVerify, TargetInsecureSkipVerify bool
	AllowPlaintext                                     bool
	Parallel                                           int      // mailboxes at once, default 4
	SourceConnections                                  int      // cap on connections to the source, default 16
	TargetConnections                                  int      // cap on connections to the target, default 16
	ConnectionsPerMailbox                              int      // default 2
	Map                                                []string // "Old=New" folder mappings (repeatable flag --map)
	Include, Exclude                                   []string // folder regexps (repeatable)
	MaxItems                                           int      // default 500000
	MaxMessageSize                                     ByteSize // default 35 MiB
	Since, Before                                      Date     // zero = unset
	Report                                             string   // CSV report path
	JSON                                               bool     // print the summary as JSON
	LogLevel                                           string   // debug|info|warn|error, default info
	// Office 365 app-only access (client-credentials flow, XOAUTH2).
	O365Tenant, O365ClientID string
	O365ClientSecret         Secret
	O365Certificate, O365Key string // PEM files, instead of a secret
	O365TokenURL             string // override for tests and sovereign clouds
	DropMDNSent              bool   // leave $MDNSent off copies
	DisarmReadReceipts       bool   // rename Disposition-Notification-To in copies
	NoMultiAppend            bool   // one APPEND per message even where MULTIAPPEND is offered
	// The proxy.
	Listen         string // implicit-TLS listener, e.g. ":993"
	ListenStartTLS string // listener with STARTTLS, e.g. ":143"
	Cert, Key      string // PEM files; empty: a self-signed certificate in the data directory
	// The service's log file (mailferry service): path, rotation size in MB
	// and rotated files kept; 0 and "" mean the defaults.
	LogFile      string
	LogMaxSizeMB int
	LogMaxFiles  int
	// The daemon (mailferry run).
	SyncInterval time.Duration // how often each mailbox is synced again
	HTTP         string        // status page and /metrics listen address
	HTTPToken    Secret        // token the status endpoint requires (optional)
	Config       string        // the --config path itself (not a TOML key)
}

// Defaults returns the Options used when neither flag nor file sets a value.
func Defaults() Options {
	return Options{
		Parallel:              4,
		SourceConnections:     16,
		TargetConnections:     16,
		ConnectionsPerMailbox: 2,
		MaxItems:              500000,
		MaxMessageSize:        35 * mib,
		LogLevel:              "info",
		SyncInterval:          5 * time.Minute,
	}
}

// option ties one Options field to its flag and config-file key.
type option struct {
	name  string // long flag name; the TOML key is name with "-" replaced by "_"
	usage string // a `word` in backquotes names the value in --help
	ptr   any    // *string, *bool, *int, *[]string, *ByteSize or *Date
	path  bool   // a file or directory: relative to the config file when set there
}

func (op option) key() string { return strings.ReplaceAll(op.name, "-", "_") }

// options lists every field of o, each once.
func (o *Options) options() []option {
	return []option{
		{"source", "source server `URL`: imaps://host[:993], imap://host[:143] (STARTTLS) or imap+plain://host:port", &o.Source, false},
		{"target", "target server `URL`, e.g. imaps://outlook.office365.com", &o.Target, false},
		{"mailboxes", "mailbox list `CSV` (EmailAddress,UserName,Password[,UserRoot,TargetUserName,TargetPassword])", &o.Mailboxes, true},
		{"data", "`directory` that keeps migration state between runs", &o.Data, true},
		{"source-ca", "trust only the CA certificates in this PEM `file` for the source (default: system roots)", &o.SourceCA, true},
		{"target-ca", "trust only the CA certificates in this PEM `file` for the target (default: system roots)", &o.TargetCA, true},
		{"source-insecure-skip-verify", "don't check the source's TLS certificate (tests only: passwords can be intercepted)", &o.SourceInsecureSkipVerify, false},
		{"target-insecure-skip-verify", "don't check the target's TLS certificate (tests only: passwords can be intercepted)", &o.TargetInsecureSkipVerify, false},
		{"allow-plaintext", "allow imap+plain:// to hosts other than this machine (passwords cross the network unencrypted)", &o.AllowPlaintext, false},
		{"parallel", "migrate this many mailboxes at once", &o.Parallel, false},
		{"source-connections", "open at most this many connections to the source", &o.SourceConnections, false},
		{"target-connections", "open at most this many connections to the target", &o.TargetConnections, false},
		{"connections-per-mailbox", "connections per mailbox on each server", &o.ConnectionsPerMailbox, false},
		{"map", "rename a folder: `Old=New` copies source folder Old into target folder New (repeatable)", &o.Map, false},
		{"include", "copy only folders matching this `regexp` (repeatable)", &o.Include, false},
		{"exclude", "don't copy folders matching this `regexp` (repeatable)", &o.Exclude, false},
		{"max-items", "most messages to copy from one mailbox", &o.MaxItems, false},
		{"max-message-size", "skip messages larger than this, e.g. 35MB (Office 365 takes at most 150 MB)", &o.MaxMessageSize, false},
		{"since", "copy only messages received on or after this day (YYYY-MM-DD)", &o.Since, false},
		{"before", "copy only messages received before this day (YYYY-MM-DD)", &o.Before, false},
		{"report", "write a per-mailbox CSV report to this `file`", &o.Report, true},
		{"json", "print the summary as JSON", &o.JSON, false},
		{"log-level", "log `level`: debug, info, warn or error", &o.LogLevel, false},
		{"drop-mdnsent", "leave the $MDNSent flag off copied messages (clients may ask about read receipts of old mail again)", &o.DropMDNSent, false},
		{"disarm-read-receipts", "rename Disposition-Notification-To headers in copied messages, so clients don't prompt for receipts of old mail", &o.DisarmReadReceipts, false},
		{"no-multiappend", "send each message in an APPEND of its own, even to a target that offers MULTIAPPEND (which stores many in one transaction)", &o.NoMultiAppend, false},
		{"listen", "proxy: accept IMAP clients with implicit TLS on this `address`, e.g. :993", &o.Listen, false},
		{"listen-starttls", "proxy: accept IMAP clients with STARTTLS on this `address`, e.g. :143 (clients must start TLS before logging in, except on loopback)", &o.ListenStartTLS, false},
		{"cert", "proxy: TLS certificate chain, PEM `file` (default: a self-signed one kept in the data directory)", &o.Cert, true},
		{"key", "proxy: TLS private key, PEM `file`", &o.Key, true},
		{"log-file", "service: write the JSON log to this `file` (default /var/log/mailferry/mailferry.log; on Windows in the data directory)", &o.LogFile, true},
		{"log-max-size-mb", "service: rotate the log file at this many megabytes (default 100)", &o.LogMaxSizeMB, false},
		{"log-max-files", "service: keep this many rotated log files besides the current one (default 5)", &o.LogMaxFiles, false},
		{"sync-interval", "daemon: sync every mailbox again after this long (jittered), e.g. 5m", &o.SyncInterval, false},
		{"http", "daemon: serve the status page and /metrics on this `address` (loopback unless a token is set)", &o.HTTP, false},
		{"http-token", "daemon: require this bearer `token` (or basic-auth password) on the status endpoint", &o.HTTPToken, false},
		{"o365-tenant", "Office 365 target: Entra tenant `id` (or domain); enables app-only XOAUTH2 logins", &o.O365Tenant, false},
		{"o365-client-id", "Office 365 target: the app registration's application (client) `id`", &o.O365ClientID, false},
		{"o365-client-secret", "Office 365 target: the app's client `secret` (better in the config file, mode 600)", &o.O365ClientSecret, false},
		{"o365-certificate", "Office 365 target: PEM `file` with the app's certificate (and key), instead of a secret", &o.O365Certificate, true},
		{"o365-key", "Office 365 target: PEM `file` with the certificate's private key, if not in the certificate file", &o.O365Key, true},
		{"o365-token-url", "Office 365 target: token endpoint `URL` (default: login.microsoftonline.com for the tenant)", &o.O365TokenURL, false},
		{"config", "read settings from this TOML `file`; flags on the command line override it", &o.Config, false},
	}
}

// RegisterFlags defines every field as a long flag on fs (e.g. --source,
// --source-ca, --source-insecure-skip-verify, --allow-plaintext, --parallel,
// --map (repeatable), --include, --exclude, --max-items, --max-message-size,
// --since, --before, --report, --json, --log-level, --config) bound to o,
// with defaults from o and one-line usage strings an admin understands.
func RegisterFlags(fs *pflag.FlagSet, o *Options) {
	for _, op := range o.options() {
		switch p := op.ptr.(type) {
		case *string:
			fs.StringVar(p, op.name, *p, op.usage)
		case *bool:
			fs.BoolVar(p, op.name, *p, op.usage)
		case *int:
			fs.IntVar(p, op.name, *p, op.usage)
		case *time.Duration:
			fs.DurationVar(p, op.name, *p, op.usage)
		case *[]string:
			// StringArray, not StringSlice: regexps and folder names may hold commas.
			fs.StringArrayVar(p, op.name, *p, op.usage)
		case pflag.Value:
			fs.Var(p, op.name, op.usage)
		}
	}
}

// Resolve loads o.Config (if set) underneath the flags: values from the file
// are used unless the same flag was given on the command line (fs.Changed).
// Repeatable flags given on the command line replace the file's list.
func Resolve(fs *pflag.FlagSet, o *Options) error {
	if o.Config == "" {
		return nil
	}
	file := *o
	if err := LoadFile(o.Config, &file); err != nil {
		return err
	}
	from := file.options()
	for i, op := range o.options() {
		if !fs.Changed(op.name) {
			reflect.ValueOf(op.ptr).Elem().Set(reflect.ValueOf(from[i].ptr).Elem())
		}
	}
	return nil
}

// KeyError is a problem with one setting, from the config file or a flag.
type KeyError struct {
	File         string // config file; "" when the position is unknown
	Line, Column int    // 1-based position in File, 0 if unknown; Column only for syntax errors
	Key          string // config key, e.g. "max_message_size"; "" for syntax errors
	Err          error
}

// Error returns "mailferry.toml:7:20: parallel: must be at least 1, got 0",
// leaving out what is unset.
func (e *KeyError) Error() string {
	var s string
	if e.File != "" {
		s = e.File
		if e.Line > 0 {
			s += ":" + strconv.Itoa(e.Line)
		}
		if e.Column > 0 {
			s += ":" + strconv.Itoa(e.Column)
		}
		s += ": "
	}
	if e.Key != "" {
		s += e.Key + ": "
	}
	return s + e.Err.Error()
}

// Unwrap returns the cause.
func (e *KeyError) Unwrap() error { return e.Err }

// Validate checks every field and returns all problems at once, joined with
// errors.Join; each is a *KeyError naming the key. It reads the CA files but
// not the mailbox list (see Check).
func (o *Options) Validate() error {
	var errs []error
	bad := func(key string, err error) { errs = append(errs, &KeyError{Key: key, Err: err}) }
	badf := func(key, format string, args ...any) { bad(key, fmt.Errorf(format, args...)) }

	for _, s := range []struct{ key, url, ca string }{{"source", o.Source, o.SourceCA}, {"target", o.Target, o.TargetCA}} {
		if err := checkURL(s.url, o.AllowPlaintext); err != nil {
			bad(s.key, err)
		}
		if err := checkCA(s.ca); err != nil {
			bad(s.key+"_ca", err)
		}
	}
	for _, s := range []struct{ key, val string }{{"mailboxes", o.Mailboxes}, {"data", o.Data}} {
		if s.val == "" {
			badf(s.key, "required")
		}
	}
	for _, c := range []struct {
		key string
		n   int
	}{
		{"parallel", o.Parallel},
		{"source_connections", o.SourceConnections},
		{"target_connections", o.TargetConnections},
		{"connections_per_mailbox", o.ConnectionsPerMailbox},
		{"max_items", o.MaxItems},
	} {
		if c.n < 1 {
			badf(c.key, "must be at least 1, got %d", c.n)
		}
	}
	if o.MaxMessageSize < kib || o.MaxMessageSize > 150*mib {
		badf("max_message_size", "must be between 1 KiB and 150 MiB (the Office 365 limit), got %v", o.MaxMessageSize)
	}
	if !o.Since.IsZero() && !o.Before.IsZero() && !o.Since.Before(o.Before.Time) {
		badf("before", "%v is not after since (%v): no message would be copied", o.Before, o.Since)
	}
	for _, s := range []struct {
		key  string
		list []string
	}{{"include", o.Include}, {"exclude", o.Exclude}} {
		for _, re := range s.list {
			if _, err := regexp.Compile(re); err != nil {
				bad(s.key, err)
			}
		}
	}
	for _, err := range checkMap(o.Map) {
		bad("map", err)
	}
	switch o.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		badf("log_level", "%q is not one of debug, info, warn, error", o.LogLevel)
	}
	if (o.Cert == "") != (o.Key == "") {
		badf("cert", "cert and key go together")
	}
	for _, l := range []struct{ key, addr string }{{"listen", o.Listen}, {"listen_starttls", o.ListenStartTLS}} {
		if l.addr != "" {
			if _, _, err := net.SplitHostPort(l.addr); err != nil {
				badf(l.key, "want host:port or :port, like :993")
			}
		}
	}
	if o.LogMaxSizeMB < 0 || o.LogMaxFiles < 0 {
		badf("log_max_size_mb", "log_max_size_mb and log_max_files can't be negative")
	}
	if o.SyncInterval < 10*time.Second {
		badf("sync_interval", "must be at least 10s, got %s", o.SyncInterval)
	}
	if o.HTTP != "" {
		host, _, err := net.SplitHostPort(o.HTTP)
		switch {
		case err != nil:
			badf("http", "want host:port, like 127.0.0.1:8025")
		case o.HTTPToken == "" && !isLoopback(host):
			badf("http", "%s is reachable from other machines: set http_token too", o.HTTP)
		}
	}
	return errors.Join(errs...)
}

// checkURL applies the rules of imapconn.ParseURL, so a bad URL is found by
// `config check` rather than when connecting. Its errors never repeat the URL:
// a user:password@ in it would leak.
func checkURL(raw string, allowPlaintext bool) error {
	if raw == "" {
		return errors.New("required")
	}
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("not a URL: %w", err)
	}
	switch {
	case u.Scheme != "imaps" && u.Scheme != "imap" && u.Scheme != "imap+plain":
		return errors.New("scheme must be imaps://, imap:// (STARTTLS) or imap+plain://")
	case u.User != nil:
		return errors.New("must not hold a user name or password: logins come from the mailbox list")
	case u.Hostname() == "":
		return errors.New("no host")
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return errors.New("must not have a path or query")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("port %s out of range", p)
		}
	}
	if u.Scheme == "imap+plain" && !allowPlaintext && !isLoopback(u.Hostname()) {
		return errors.New("imap+plain sends passwords unencrypted: only to loopback hosts (127.0.0.1, ::1, localhost) unless allow_plaintext is set")
	}
	return nil
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return strings.EqualFold(host, "localhost") || ip != nil && ip.IsLoopback()
}

// checkCA reports whether file, if set, holds a PEM certificate.
func checkCA(file string) error {
	if file == "" {
		return nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no PEM certificate found", file)
	}
	return nil
}

// checkMap checks "Old=New" entries the way sync.ParseMap reads them (spaces
// and "/" trimmed), and that no folder is mapped twice.
func checkMap(entries []string) []error {
	var errs []error
	seen := map[string]bool{}
	for _, e := range entries {
		old, repl, ok := strings.Cut(e, "=")
		old, repl = strings.Trim(old, " /"), strings.Trim(repl, " /")
		switch {
		case !ok || old == "" || repl == "":
			errs = append(errs, fmt.Errorf("%q: want Old=New", e))
		case seen[old]:
			errs = append(errs, fmt.Errorf("%q: folder %q is mapped twice", e, old))
		}
		seen[old] = true
	}
	return errs
}
