package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// notExist is the OS's text for a missing file.
var notExist = func() string {
	_, err := os.Open("testdata/none")
	return errors.Unwrap(err).Error()
}()

func TestLoadFile(t *testing.T) {
	tests := []struct {
		name string
		file string
		want func(o *Options) // changes from Defaults; "DIR" in paths is the file's directory
		errs []string         // "FILE" is the file's path
	}{
		{
			name: "every type",
			file: `source = "imaps://old.example.com"
source_insecure_skip_verify = true
parallel = 8
map = ["Sent Messages=Sent Items", "a=b"]
exclude = ['^Archive/\d{4}$']
max_message_size = "20MB"
since = 2024-01-31
before = "2025-01-01"
mailboxes = "users.csv"
data = "/var/lib/mailferry"
log_level = "debug"
`,
			want: func(o *Options) {
				o.Source, o.SourceInsecureSkipVerify, o.Parallel = "imaps://old.example.com", true, 8
				o.Map, o.Exclude = []string{"Sent Messages=Sent Items", "a=b"}, []string{`^Archive/\d{4}$`}
				o.MaxMessageSize = 20 * mib
				o.Since, o.Before = Date{time.Date(2024, 1, 31, 0, 0, 0, 0, time.UTC)}, Date{time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
				o.Mailboxes, o.Data, o.LogLevel = filepath.Join("DIR", "users.csv"), "/var/lib/mailferry", "debug"
			},
		},
		{
			name: "size as a number, empty file list",
			file: "max_message_size = 1048576\ninclude = []\n",
			want: func(o *Options) { o.MaxMessageSize, o.Include = mib, []string{} },
		},
		{
			name: "every problem at once",
			file: `paralel = 8
parallel = "8"
source-ca = "ca.pem"
map = "a=b"
include = ["a", 1]
max_message_size = "35 TB"
since = 2024-01-31T10:00:00
json = 1
config = "other.toml"
[source]
host = "x"
`,
			want: func(o *Options) {}, // rejected values leave the defaults alone
			errs: []string{
				"FILE:1: paralel: unknown key",
				"FILE:2: parallel: want an integer, got a string",
				"FILE:3: source-ca: unknown key; did you mean source_ca?",
				`FILE:4: map: want an array of strings, like ["a", "b"], got a string`,
				"FILE:5: include: want an array of strings, got an integer",
				`FILE:6: max_message_size: invalid size "35 TB": want a whole number with an optional unit B, KB, MB or GB (1 MB = 1024 KB)`,
				"FILE:7: since: want a date without time, like 2024-01-31, got a date-time",
				"FILE:8: json: want true or false, got an integer",
				"FILE:9: config: only a command-line flag, not a config file key",
				"FILE:10: source: want a string, got a table",
			},
		},
		{
			name: "syntax error",
			file: "parallel = 8\nsource = \"imaps://x\nlog_level = 'info'\n",
			errs: []string{"FILE:2:20: strings cannot contain newlines"},
		},
		{
			name: "duplicate key",
			file: "parallel = 8\nparallel = 9\n",
			errs: []string{"FILE:2:14: Key 'parallel' has already been defined."},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "mailferry.toml", tt.file)
			o := Defaults()
			err := LoadFile(path, &o)
			var got []string
			for _, s := range errTexts(err) {
				got = append(got, strings.ReplaceAll(s, path, "FILE"))
			}
			if !reflect.DeepEqual(got, tt.errs) {
				t.Errorf("errors:\n got %q\nwant %q", got, tt.errs)
			}
			if tt.want == nil {
				return
			}
			want := Defaults()
			tt.want(&want)
			want.Mailboxes = strings.Replace(want.Mailboxes, "DIR", filepath.Dir(path), 1)
			if !reflect.DeepEqual(o, want) {
				t.Errorf("got  %+v\nwant %+v", o, want)
			}
		})
	}

	t.Run("syntax error is a toml.ParseError", func(t *testing.T) {
		o := Defaults()
		var pe toml.ParseError
		if err := LoadFile(writeFile(t, "x.toml", "a = [\n"), &o); !errors.As(err, &pe) || pe.Position.Line == 0 {
			t.Errorf("error %v: want a toml.ParseError with a position", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		o := Defaults()
		if err := LoadFile(filepath.Join(t.TempDir(), "none.toml"), &o); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("error %v, want os.ErrNotExist", err)
		}
	})
}

func TestSample(t *testing.T) {
	o := Defaults()
	if err := LoadFile("sample.toml", &o); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}

	// As shipped, next to a mailbox list: config check passes.
	dir := t.TempDir()
	for _, f := range []string{"sample.toml", "testdata/users.csv"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Check(filepath.Join(dir, "sample.toml")); err != nil {
		t.Errorf("Check(sample.toml): %v", err)
	}
}

func TestCheck(t *testing.T) {
	users, err := filepath.Abs("testdata/users.csv")
	if err != nil {
		t.Fatal(err)
	}
	bad := writeFile(t, "bad.csv", "EmailAddress,UserName,Password\nalice@example.com,,pw\n")
	tests := []struct {
		name string
		file string
		want []string // "FILE" is the config file's path
	}{
		{
			name: "valid",
			file: "source = 'imaps://a.example'\ntarget = 'imaps://b.example'\ndata = 'd'\nmailboxes = '" + users + "'\n",
		},
		{
			name: "load, validate and mailbox errors together",
			file: "source = 'imaps://a.example'\ntarget = 'http://b.example'\nparallel = 'x'\nmax_items = 0\nmailboxes = '" + bad + "'\nsource_ca = 1\n",
			want: []string{
				"FILE:3: parallel: want an integer, got a string",
				"FILE:6: source_ca: want a string, got an integer",
				"FILE:2: target: scheme must be imaps://, imap:// (STARTTLS) or imap+plain://",
				"FILE: data: required",
				"FILE:4: max_items: must be at least 1, got 0",
				bad + ":2:2: UserName: empty",
			},
		},
		{
			name: "missing mailbox list",
			file: "source = 'imaps://a.example'\ntarget = 'imaps://b.example'\ndata = 'd'\nmailboxes = 'none.csv'\n",
			want: []string{"mailbox list: open DIR/none.csv: " + notExist},
		},
		{
			name: "syntax error alone",
			file: "source = \n",
			want: []string{"FILE:1:10: expected value but found '\\n' instead"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, "mailferry.toml", tt.file)
			var got []string
			for _, s := range errTexts(Check(path)) {
				s = strings.ReplaceAll(s, path, "FILE")
				got = append(got, strings.ReplaceAll(s, filepath.Dir(path), "DIR"))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}
