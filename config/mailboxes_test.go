package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadMailboxes(t *testing.T) {
	alice := Mailbox{Email: "alice@example.com", UserName: "alice", Password: "pw1", Line: 2}
	bob := Mailbox{Email: "bob@example.com", UserName: "bob", Password: "pw2", Line: 3}
	at := func(m Mailbox, line int) Mailbox { m.Line = line; return m }

	tests := []struct {
		name string
		in   string
		want []Mailbox
		errs []string // RowError texts, in order
	}{
		{
			name: "plain",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice,pw1\nbob@example.com,bob,pw2\n",
			want: []Mailbox{alice, bob},
		},
		{
			name: "BOM and CRLF",
			in:   "\uFEFFEmailAddress,UserName,Password\r\nalice@example.com,alice,pw1\r\nbob@example.com,bob,pw2\r\n",
			want: []Mailbox{alice, bob},
		},
		{
			name: "semicolons, header case and spaces",
			in:   " emailaddress ;USERNAME; Password\nalice@example.com;alice;pw1\nbob@example.com;bob;pw2",
			want: []Mailbox{alice, bob},
		},
		{
			name: "semicolon with commas in values",
			in:   "EmailAddress;UserName;Password\nalice@example.com;DOMAIN/admin/alice;a,b\n",
			want: []Mailbox{{Email: "alice@example.com", UserName: "DOMAIN/admin/alice", Password: "a,b", Line: 2}},
		},
		{
			name: "quoted fields with separators and quotes",
			in:   "EmailAddress,UserName,Password\n\"alice@example.com\",\"alice*admin\",\"p,w\"\"1\"\n",
			want: []Mailbox{{Email: "alice@example.com", UserName: "alice*admin", Password: `p,w"1`, Line: 2}},
		},
		{
			name: "multi-line quoted field",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice,\"line1\nline2\"\nbob@example.com,bob,pw2\n",
			want: []Mailbox{{Email: "alice@example.com", UserName: "alice", Password: "line1\nline2", Line: 2}, at(bob, 4)},
		},
		{
			name: "blank lines anywhere and trailing",
			in:   "\nEmailAddress,UserName,Password\n\nalice@example.com,alice,pw1\n,,\n  \nbob@example.com,bob,pw2\n\n\n\r\n",
			want: []Mailbox{at(alice, 4), at(bob, 7)},
		},
		{
			name: "optional columns in any order",
			in:   "TargetPassword,UserRoot,Password,TargetUserName,UserName,EmailAddress\ntpw,/users/alice,pw1,alice@tenant.example,alice,alice@example.com\n",
			want: []Mailbox{{Email: "alice@example.com", UserName: "alice", Password: "pw1", UserRoot: "/users/alice", TargetUserName: "alice@tenant.example", TargetPassword: "tpw", Line: 2}},
		},
		{
			name: "Excel's trailing empty columns",
			in:   "EmailAddress,UserName,Password,,\nalice@example.com,alice,pw1,,\nbob@example.com,bob,pw2,x,\n",
			want: []Mailbox{alice},
			errs: []string{"u.csv:3:4: value in a column without a header"},
		},
		{
			name: "domain lower-cased, local part kept",
			in:   "EmailAddress,UserName,Password\n Alice.Smith@Example.COM ,alice,pw1\n",
			want: []Mailbox{{Email: "Alice.Smith@example.com", UserName: "alice", Password: "pw1", Line: 2}},
		},
		{
			name: "missing column",
			in:   "EmailAddress,Password\nalice@example.com,pw1\n",
			errs: []string{"u.csv:1: UserName: missing required column"},
		},
		{
			name: "unknown and duplicate column",
			in:   "EmailAddress,UserName,Password,Pasword,username\nalice@example.com,alice,pw1,x,y\n",
			errs: []string{
				`u.csv:1:4: unknown column "Pasword" (known: EmailAddress, UserName, Password, UserRoot, TargetUserName, TargetPassword)`,
				"u.csv:1:5: UserName: duplicate column (also column 2)",
			},
		},
		{
			name: "empty file",
			in:   "\uFEFF\r\n",
			errs: []string{"u.csv:1: no header row (want EmailAddress,UserName,Password)"},
		},
		{
			name: "bad email",
			in:   "EmailAddress,UserName,Password\nalice,alice,pw1\nBob <bob@example.com>,bob,pw2\n<carol@example.com>,carol,pw3\ndave@example.com,dave,pw4\n",
			want: []Mailbox{{Email: "dave@example.com", UserName: "dave", Password: "pw4", Line: 5}},
			errs: []string{
				"u.csv:2:1: EmailAddress: not a plain email address like user@example.com",
				"u.csv:3:1: EmailAddress: not a plain email address like user@example.com",
				"u.csv:4:1: EmailAddress: not a plain email address like user@example.com",
			},
		},
		{
			name: "duplicate email, case-insensitive",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice,pw1\nbob@example.com,bob,pw2\nALICE@Example.com,alice2,pw3\n",
			want: []Mailbox{alice, bob},
			errs: []string{"u.csv:4:1: EmailAddress: duplicate of line 2"},
		},
		{
			name: "empty fields",
			in:   "EmailAddress,UserName,Password\n,alice,pw1\nbob@example.com, ,\n",
			errs: []string{
				"u.csv:2:1: EmailAddress: empty",
				"u.csv:3:2: UserName: empty",
				"u.csv:3:3: Password: empty",
			},
		},
		{
			name: "target user without target password and vice versa",
			in:   "EmailAddress,UserName,Password,TargetUserName,TargetPassword\na@example.com,a,pw,ta,\nb@example.com,b,pw,,tpw\n",
			errs: []string{
				"u.csv:2:5: TargetPassword: empty, but TargetUserName is set",
				"u.csv:3:4: TargetUserName: empty, but TargetPassword is set",
			},
		},
		{
			name: "wrong field count",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice\nbob@example.com,bob,pw2,extra\n",
			errs: []string{
				"u.csv:2: 2 fields, but the header has 3",
				"u.csv:3: 4 fields, but the header has 3",
			},
		},
		{
			name: "bad quotes, reading goes on",
			in:   "EmailAddress,UserName,Password\nalice@example.com,al\"ice,pw1\nbob@example.com,bob,pw2\n",
			want: []Mailbox{at(bob, 3)},
			errs: []string{`u.csv:2: bare " in non-quoted-field at character 21`},
		},
		{
			name: "unterminated quote",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice,\"pw1\nbob@example.com,bob,pw2\n",
			errs: []string{`u.csv:2: extraneous or missing " in quoted-field on line 3, character 25`},
		},
		{
			name: "not UTF-8",
			in:   "EmailAddress,UserName,Password\nalice@example.com,alice,p\xe4ss\n",
			errs: []string{`u.csv:2:3: Password: not UTF-8 text (in Excel, save as "CSV UTF-8")`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadMailboxes(strings.NewReader(tt.in), "u.csv")
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("mailboxes:\n got %#v\nwant %#v", reveal(got), reveal(tt.want))
			}
			if msgs := rowErrors(t, err); !reflect.DeepEqual(msgs, tt.errs) {
				t.Errorf("errors:\n got %q\nwant %q", msgs, tt.errs)
			}
		})
	}
}

// reveal makes passwords visible in test failures.
func reveal(ms []Mailbox) []string {
	var s []string
	for _, m := range ms {
		s = append(s, fmt.Sprintf("%d %s %s %s %s %s %s", m.Line, m.Email, m.UserName, m.Password.Reveal(), m.UserRoot, m.TargetUserName, m.TargetPassword.Reveal()))
	}
	return s
}

// rowErrors returns the RowErrors' texts, checking that err is a *ListError
// whose text lists them.
func rowErrors(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var le *ListError
	if !errors.As(err, &le) {
		t.Fatalf("error %v is a %T, want *ListError", err, err)
	}
	var msgs []string
	for _, re := range le.Errors {
		msgs = append(msgs, re.Error())
	}
	if err.Error() != strings.Join(msgs, "\n") {
		t.Errorf("ListError text %q doesn't list its errors", err)
	}
	if len(le.Unwrap()) != len(le.Errors) {
		t.Errorf("Unwrap returned %d errors, want %d", len(le.Unwrap()), len(le.Errors))
	}
	return msgs
}

func TestReadMailboxesLimits(t *testing.T) {
	rows := func(n int) string {
		var b strings.Builder
		b.WriteString("EmailAddress,UserName,Password\n")
		for i := range n {
			fmt.Fprintf(&b, "user%d@example.com,user%d,pw\n", i, i)
		}
		return b.String()
	}
	got, err := ReadMailboxes(strings.NewReader(rows(maxRows)), "u.csv")
	if err != nil || len(got) != maxRows {
		t.Errorf("%d rows: got %d mailboxes, error %v", maxRows, len(got), err)
	}

	got, err = ReadMailboxes(strings.NewReader(rows(maxRows+1)), "u.csv")
	if want := "u.csv:50002: more than 50000 rows, the Exchange Online limit"; got != nil || err == nil || err.Error() != want {
		t.Errorf("%d rows: got %d mailboxes, error %v; want %q", maxRows+1, len(got), err, want)
	}

	big := "EmailAddress,UserName,Password\n" + strings.Repeat(" ", maxListBytes)
	if _, err := ReadMailboxes(strings.NewReader(big), "u.csv"); err == nil || !strings.Contains(err.Error(), "larger than 10 MB") {
		t.Errorf("%d bytes: error %v, want larger than 10 MB", len(big), err)
	}
}

func TestLoadMailboxes(t *testing.T) {
	got, err := LoadMailboxes(filepath.Join("testdata", "users.csv"))
	if err != nil || len(got) != 2 || got[1].Password.Reveal() != "pass,with;comma" {
		t.Errorf("testdata/users.csv: %v, %v", reveal(got), err)
	}
	if _, err := LoadMailboxes(filepath.Join(t.TempDir(), "none.csv")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: error %v, want os.ErrNotExist", err)
	}
}

// TestPasswordsNeverLeak: a password must not show up in errors, fmt output
// or JSON, whatever the verb.
func TestPasswordsNeverLeak(t *testing.T) {
	in := "EmailAddress,UserName,Password,TargetUserName,TargetPassword\n" +
		"not-an-email,alice,hunter2,,hunter2\n" + // bad email, target password without user
		"hunter2,,hunter2,x,\n" + // password in the email column, several bad fields
		"a@example.com,a,hunter2,hunter2\n" // wrong field count
	_, err := ReadMailboxes(strings.NewReader(in), "u.csv")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error leaks the password or is missing: %v", err)
	}

	m := Mailbox{Email: "a@example.com", UserName: "a", Password: "hunter2", TargetPassword: "hunter2"}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%10.3s"} {
		for _, v := range []any{m, &m, m.Password, []Mailbox{m}} {
			if s := fmt.Sprintf(verb, v); strings.Contains(s, "hunter2") || strings.Contains(s, "68756e74657232") {
				t.Errorf("Sprintf(%q, %T) = %s", verb, v, s)
			}
		}
	}
	for _, v := range []any{m, []Secret{"hunter2"}, map[string]Secret{"k": "hunter2"}} {
		b, err := json.Marshal(v)
		if err != nil || strings.Contains(string(b), "hunter2") {
			t.Errorf("json.Marshal(%T) = %s, %v", v, b, err)
		}
	}
	if m.Password.String() != "[redacted]" || m.Password.GoString() != "[redacted]" || m.Password.Reveal() != "hunter2" {
		t.Errorf("String %q, GoString %q, Reveal %q", m.Password.String(), m.Password.GoString(), m.Password.Reveal())
	}
	if b, _ := m.Password.MarshalText(); string(b) != "[redacted]" {
		t.Errorf("MarshalText = %s", b)
	}
	if b, _ := m.Password.MarshalJSON(); string(b) != `"[redacted]"` {
		t.Errorf("MarshalJSON = %s", b)
	}
}
