package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// writeFile writes content to name in a fresh directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// errTexts returns the texts of the errors joined in err.
func errTexts(err error) []string {
	var s []string
	for _, e := range unjoin(err) {
		s = append(s, e.Error())
	}
	return s
}

func TestRegisterFlags(t *testing.T) {
	o := Defaults()
	fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
	RegisterFlags(fs, &o)
	err := fs.Parse([]string{
		"--source", "imaps://old.example.com", "--source-ca", "ca.pem", "--source-insecure-skip-verify",
		"--allow-plaintext", "--parallel=3", "--map", "A=B", "--map", "C,D=E",
		"--include", "^(a|b){1,2}$", "--max-message-size", "20 MB", "--since", "2024-01-31", "--json",
	})
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	want.Source, want.SourceCA, want.SourceInsecureSkipVerify, want.AllowPlaintext = "imaps://old.example.com", "ca.pem", true, true
	want.Parallel, want.Map, want.Include = 3, []string{"A=B", "C,D=E"}, []string{"^(a|b){1,2}$"}
	want.MaxMessageSize, want.Since, want.JSON = 20*mib, Date{time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}, true
	if !reflect.DeepEqual(o, want) {
		t.Errorf("got  %+v\nwant %+v", o, want)
	}

	// Every option is a flag, with a usage text and its key in sample.toml.
	sample, err := os.ReadFile("sample.toml")
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range o.options() {
		f := fs.Lookup(op.name)
		if f == nil || f.Usage == "" {
			t.Errorf("flag --%s missing or without usage", op.name)
		}
		if op.name != "config" && !strings.Contains(string(sample), "\n"+op.key()+" = ") && !strings.Contains(string(sample), "\n# "+op.key()+" = ") {
			t.Errorf("sample.toml doesn't document %s", op.key())
		}
	}
	if usage := fs.FlagUsages(); !strings.Contains(usage, "(default 35 MiB)") || !strings.Contains(usage, "--source URL") {
		t.Errorf("usage lacks default size or value name:\n%s", usage)
	}
}

func TestResolve(t *testing.T) {
	file := "parallel = 8\nmap = [\"a=b\"]\nsince = 2024-01-31\nmailboxes = \"users.csv\"\nmax_message_size = \"20MB\"\n"
	date := Date{time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}
	tests := []struct {
		name string
		args []string // --config is added
		want func(o *Options)
	}{
		{"file only", nil, func(o *Options) { o.Parallel, o.Map = 8, []string{"a=b"} }},
		{"flag wins", []string{"--parallel", "2"}, func(o *Options) { o.Parallel, o.Map = 2, []string{"a=b"} }},
		{"flag equal to the default still wins", []string{"--parallel=4"}, func(o *Options) { o.Map = []string{"a=b"} }},
		{"repeatable flag replaces the list", []string{"--map", "x=y", "--map=z=w"}, func(o *Options) { o.Parallel, o.Map = 8, []string{"x=y", "z=w"} }},
		{"empty flag clears a date", []string{"--since="}, func(o *Options) { o.Parallel, o.Map, o.Since = 8, []string{"a=b"}, Date{} }},
		{"flag path stays as given", []string{"--mailboxes", "other.csv"}, func(o *Options) { o.Parallel, o.Map, o.Mailboxes = 8, []string{"a=b"}, "other.csv" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "mailferry.toml", file)
			o := Defaults()
			fs := pflag.NewFlagSet("sync", pflag.ContinueOnError)
			RegisterFlags(fs, &o)
			if err := fs.Parse(append(tt.args, "--config", path)); err != nil {
				t.Fatal(err)
			}
			if err := Resolve(fs, &o); err != nil {
				t.Fatal(err)
			}
			want := Defaults()
			want.Config, want.Since, want.MaxMessageSize = path, date, 20*mib
			want.Mailboxes = filepath.Join(filepath.Dir(path), "users.csv")
			tt.want(&want)
			if !reflect.DeepEqual(o, want) {
				t.Errorf("got  %+v\nwant %+v", o, want)
			}
		})
	}

	t.Run("no config", func(t *testing.T) {
		o := Defaults()
		if err := Resolve(pflag.NewFlagSet("x", pflag.ContinueOnError), &o); err != nil || !reflect.DeepEqual(o, Defaults()) {
			t.Errorf("Resolve without --config: %+v, %v", o, err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		o := Defaults()
		o.Config = writeFile(t, "bad.toml", "parallel = 'x'\n")
		if err := Resolve(pflag.NewFlagSet("x", pflag.ContinueOnError), &o); err == nil || o.Parallel != 4 {
			t.Errorf("Resolve with a bad file: parallel %d, error %v", o.Parallel, err)
		}
	})
}

// valid returns Options that pass Validate.
func valid() Options {
	o := Defaults()
	o.Source, o.Target = "imaps://imap.example.com", "imaps://outlook.office365.com"
	o.Mailboxes, o.Data = "users.csv", "data"
	return o
}

func TestValidate(t *testing.T) {
	day := func(s string) Date { var d Date; _ = d.Set(s); return d }
	tests := []struct {
		name string
		edit func(o *Options)
		want []string
	}{
		{"valid", func(o *Options) {}, nil},
		{"everything set", func(o *Options) {
			o.Source, o.Target = "imap://old.example.com:1143", "imap+plain://127.0.0.2:1143"
			o.SourceCA, o.TargetCA = "testdata/ca.pem", "testdata/ca.pem"
			o.Map, o.Include, o.Exclude = []string{"Sent Messages=Sent Items", "/Spam/=Junk"}, []string{"^INBOX"}, []string{`^Archive/\d{4}$`}
			o.Since, o.Before = day("2020-01-01"), day("2020-01-02")
			o.MaxMessageSize, o.LogLevel = 150*mib, "debug"
		}, nil},
		{"plaintext to localhost", func(o *Options) { o.Source, o.Target = "imap+plain://localhost:143", "imap+plain://[::1]:143" }, nil},
		{"plaintext allowed", func(o *Options) { o.Source, o.AllowPlaintext = "imap+plain://10.0.0.1:143", true }, nil},
		{"nothing set", func(o *Options) { *o = Options{} }, []string{
			"source: required",
			"target: required",
			"mailboxes: required",
			"data: required",
			"parallel: must be at least 1, got 0",
			"source_connections: must be at least 1, got 0",
			"target_connections: must be at least 1, got 0",
			"connections_per_mailbox: must be at least 1, got 0",
			"max_items: must be at least 1, got 0",
			"max_message_size: must be between 1 KiB and 150 MiB (the Office 365 limit), got 0 B",
			`log_level: "" is not one of debug, info, warn, error`,
			"sync_interval: must be at least 10s, got 0s",
		}},
		{"bad URLs", func(o *Options) {
			o.Source, o.Target = "https://imap.example.com", "imaps://admin:hunter2@outlook.office365.com"
		}, []string{
			"source: scheme must be imaps://, imap:// (STARTTLS) or imap+plain://",
			"target: must not hold a user name or password: logins come from the mailbox list",
		}},
		{"more bad URLs", func(o *Options) { o.Source, o.Target = "imaps://", "imaps://host/INBOX" }, []string{
			"source: no host",
			"target: must not have a path or query",
		}},
		{"URL parse errors don't repeat the URL", func(o *Options) { o.Source, o.Target = "imaps://u:hunter2@host:99999", "imaps://u:hunter2@ho st" }, []string{
			"source: must not hold a user name or password: logins come from the mailbox list",
			`target: not a URL: invalid character " " in host name`,
		}},
		{"port out of range", func(o *Options) { o.Source = "imaps://host:0" }, []string{"source: port 0 out of range"}},
		{"plaintext to the network", func(o *Options) { o.Target = "imap+plain://mail.example.com:143" }, []string{
			"target: imap+plain sends passwords unencrypted: only to loopback hosts (127.0.0.1, ::1, localhost) unless allow_plaintext is set",
		}},
		{"bad CA files", func(o *Options) { o.SourceCA, o.TargetCA = "testdata/none.pem", "testdata/users.csv" }, []string{
			"source_ca: open testdata/none.pem: " + notExist,
			"target_ca: testdata/users.csv: no PEM certificate found",
		}},
		{"limits", func(o *Options) { o.Parallel, o.MaxItems, o.MaxMessageSize = -1, 0, 151*mib }, []string{
			"parallel: must be at least 1, got -1",
			"max_items: must be at least 1, got 0",
			"max_message_size: must be between 1 KiB and 150 MiB (the Office 365 limit), got 151 MiB",
		}},
		{"dates", func(o *Options) { o.Since, o.Before = day("2024-01-31"), day("2024-01-31") }, []string{
			"before: 2024-01-31 is not after since (2024-01-31): no message would be copied",
		}},
		{"folders", func(o *Options) {
			o.Map = []string{"Sent", "=New", "Old= ", "A=B", "A/=C"}
			o.Include, o.Exclude = []string{"(", "ok"}, []string{"[z-a]"}
		}, []string{
			"include: error parsing regexp: missing closing ): `(`",
			"exclude: error parsing regexp: invalid character class range: `z-a`",
			`map: "Sent": want Old=New`,
			`map: "=New": want Old=New`,
			`map: "Old= ": want Old=New`,
			`map: "A/=C": folder "A" is mapped twice`,
		}},
		{"log level", func(o *Options) { o.LogLevel = "verbose" }, []string{`log_level: "verbose" is not one of debug, info, warn, error`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := valid()
			tt.edit(&o)
			err := o.Validate()
			if got := errTexts(err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
			for _, e := range unjoin(err) {
				var ke *KeyError
				if !errors.As(e, &ke) || ke.Key == "" {
					t.Errorf("%v is not a *KeyError naming its key", e)
				}
			}
		})
	}
}
