package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func FuzzReadMailboxes(f *testing.F) {
	for _, s := range []string{
		"EmailAddress,UserName,Password\nalice@example.com,alice,hunter2\n",
		"\uFEFFEmailAddress,UserName,Password\r\nalice@example.com,alice,hunter2\r\n\r\n\r\n",
		"EmailAddress;UserName;Password;TargetUserName;TargetPassword\r\nalice@example.com;alice;p,w;alice@tenant.example;p;w2\r\n;;;;\r\n",
		"EmailAddress,UserName,Password,UserRoot\n\"alice@example.com\",\"DOMAIN/admin/alice\",\"p\"\"w,\nline2\",/home\n",
		"EmailAddress,UserName,Password\nalice@example.com,alice,pw\nALICE@EXAMPLE.COM,alice,secret-pass\n",
		"EmailAddress,UserName,Password,,\nnot-an-email,,secret-pass,x,\nbob@example.com,bob,\"open\n",
		"EmailAddress,UserName,Pasword\nsecret-pass,secret-pass,secret-pass\n",
		"EmailAddress,Password,UserName\nalice,secret-pass,alice@example.com\n", // columns swapped
		"Password,EmailAddress,UserName\nsecret-pass,a@b.example,u,extra\nsecret-pass,<a@b.example>,u\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		list, err := ReadMailboxes(bytes.NewReader(data), "u.csv")
		seen := map[string]bool{}
		for _, m := range list {
			if m.Email == "" || m.UserName == "" || m.Password == "" {
				t.Fatalf("line %d: empty required field in %v", m.Line, m)
			}
			key := strings.ToLower(m.Email)
			if seen[key] {
				t.Fatalf("line %d: duplicate %s returned", m.Line, m.Email)
			}
			seen[key] = true
		}
		if err == nil {
			return
		}
		var le *ListError
		if !errors.As(err, &le) {
			if !strings.Contains(err.Error(), "larger than 10 MB") {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		header, passwords := cells(data)
		for _, re := range le.Errors {
			checkRowError(t, re, header)
		}
		vocab := strings.Join(append(header, allowedMsgs...), "\n")
		for _, p := range passwords {
			// A password that can't be part of the fixed text is never in an error.
			if len(p) >= 6 && !strings.ContainsAny(p, "0123456789: \t\r\n") && !strings.Contains(vocab, p) && strings.Contains(err.Error(), p) {
				t.Fatalf("error leaks password %q:\n%v", p, err)
			}
		}
	})
}

// allowedMsgs are every RowError message, with numbers as N. RowErrors quote
// nothing else, except header cells in "unknown column".
var allowedMsgs = []string{
	"no header row (want EmailAddress,UserName,Password)",
	"missing required column",
	"duplicate column (also column N)",
	"N fields, but the header has N",
	"more than N rows, the Exchange Online limit",
	"value in a column without a header",
	`not UTF-N text (in Excel, save as "CSV UTF-N")`,
	"empty",
	"empty, but TargetUserName is set",
	"empty, but TargetPassword is set",
	"not a plain email address like user@example.com",
	"duplicate of line N",
	`bare " in non-quoted-field at character N`,
	`extraneous or missing " in quoted-field at character N`,
	`bare " in non-quoted-field on line N, character N`,
	`extraneous or missing " in quoted-field on line N, character N`,
	"unknown column", // followed by a header cell and the known columns
}

var digits = regexp.MustCompile(`\d+`)

func checkRowError(t *testing.T, re *RowError, header []string) {
	t.Helper()
	msg := digits.ReplaceAllString(re.Msg, "N")
	if after, ok := strings.CutPrefix(re.Msg, "unknown column "); ok {
		if !slices.ContainsFunc(header, func(h string) bool { return strings.HasPrefix(after, h) }) {
			t.Fatalf("%v: unknown column not from the header %q", re, header)
		}
		msg = "unknown column"
	}
	if re.File != "u.csv" || re.Line < 1 || re.Column < 0 || !slices.Contains(allowedMsgs, msg) ||
		re.Field != "" && !slices.Contains(columnNames[:], re.Field) {
		t.Fatalf("unexpected RowError %#v", re)
	}
}

// cells returns the header's cells (as written and quoted, as errors show
// them) and the values of every password cell, found independently of
// ReadMailboxes' row checks.
func cells(data []byte) (header, passwords []string) {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	cr := newCSVReader(data, sniff(data))
	rec, err := nextRecord(cr)
	if err != nil {
		return nil, nil
	}
	var pw []int
	for i, h := range rec {
		header = append(header, h, fmt.Sprintf("%q", strings.TrimSpace(h)))
		if c, _ := lookupColumn(h); c == colPassword || c == colTargetPassword {
			pw = append(pw, i)
		}
	}
	for {
		rec, err := cr.Read() // rec is nil after a syntax error; reading goes on
		if err == io.EOF {
			return header, passwords
		}
		for _, i := range pw {
			if i < len(rec) {
				passwords = append(passwords, rec[i])
			}
		}
	}
}

func FuzzLoadFile(f *testing.F) {
	sample, err := os.ReadFile("sample.toml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(sample),
		"parallel = 8\nmap = [\"a=b\"]\n",
		"paralel = 8\nparallel = \"8\"\n[source]\nhost = 1\n",
		"a.b.c = 1\nsince = 2024-01-31T10:00:00Z\nmax_message_size = 99999999999999\n",
		"include = [[1], {a = 1}]\nbefore = 1979-05-27\n[[exclude]]\n",
		"source = \"imaps://x\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o := Defaults()
		_, err := decodeFile(data, "f.toml", &o)
		for _, e := range unjoin(err) {
			var ke *KeyError
			if !errors.As(e, &ke) || ke.File != "f.toml" {
				t.Fatalf("error %v is not a *KeyError on f.toml", e)
			}
		}
		o.SourceCA, o.TargetCA = "", "" // Validate would read any file named
		_ = o.Validate()
	})
}
