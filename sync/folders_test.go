package sync

import (
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/emersion/go-imap/v2"
)

func TestPlanFolders(t *testing.T) {
	sent := []imap.MailboxAttr{imap.MailboxAttrSent}
	tests := []struct {
		name   string
		src    []SourceFolder
		prefix string
		delim  rune
		tdelim rune
		rules  FolderRules
		want   map[string]string // source → target ("-" = skipped)
	}{{
		name:   "courier layout",
		prefix: "INBOX.", delim: '.', tdelim: '/',
		src: []SourceFolder{{Name: "INBOX"}, {Name: "INBOX.Sent", Attrs: sent}, {Name: "INBOX.Sent.2023"},
			{Name: "INBOX.Projects.2024"}, {Name: "INBOX.Trash"}, {Name: "INBOX.Spam"}, {Name: "INBOX.a/b"}},
		want: map[string]string{"INBOX": "INBOX", "INBOX.Sent": "Sent Items", "INBOX.Sent.2023": "Sent Items/2023",
			"INBOX.Projects.2024": "Projects/2024", "INBOX.Trash": "Deleted Items", "INBOX.Spam": "Junk Email",
			"INBOX.a/b": "a∕b"},
	}, {
		name:  "attribute wins over name",
		delim: '/', tdelim: '/',
		src:  []SourceFolder{{Name: "Sent"}, {Name: "Gesendet", Attrs: sent}},
		want: map[string]string{"Gesendet": "Sent Items", "Sent": "Sent"},
	}, {
		name:  "case collision and reserved names",
		delim: '/', tdelim: '/',
		src:  []SourceFolder{{Name: "Foo"}, {Name: "foo"}, {Name: "Calendar"}, {Name: "files"}},
		want: map[string]string{"Foo": "Foo", "foo": "foo (2)", "Calendar": "Calendar (migrated)", "files": "files (migrated)"},
	}, {
		name:  "map, include, exclude, noselect",
		delim: '.', tdelim: '/',
		src: []SourceFolder{{Name: "INBOX"}, {Name: "Old"}, {Name: "Old.Sub"}, {Name: "Tmp"},
			{Name: "Parent", Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}}, {Name: "Parent.Child"}},
		rules: FolderRules{Map: map[string]string{"Old": "Archive/Old"}, Exclude: []*regexp.Regexp{regexp.MustCompile(`^Tmp$`)}},
		want: map[string]string{"INBOX": "INBOX", "Old": "Archive/Old", "Old.Sub": "Archive/Old/Sub", "Tmp": "-",
			"Parent": "-", "Parent.Child": "Parent/Child"},
	}, {
		name:  "dot target",
		delim: '/', tdelim: '.',
		src:  []SourceFolder{{Name: "a.b/c"}},
		want: map[string]string{"a.b/c": "a_b.c"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := map[string]string{}
			for _, p := range PlanFolders(tt.src, tt.prefix, tt.delim, tt.tdelim, tt.rules) {
				if p.Skip != "" {
					got[p.Source] = "-"
				} else {
					got[p.Source] = p.Target
				}
			}
			for s, want := range tt.want {
				if got[s] != want {
					t.Errorf("%q → %q, want %q", s, got[s], want)
				}
			}
		})
	}
}

func TestParseMap(t *testing.T) {
	m, err := ParseMap([]string{"Old = New/Sub", "/A/=B"})
	if err != nil || m["Old"] != "New/Sub" || m["A"] != "B" {
		t.Fatalf("%v %v", m, err)
	}
	for _, bad := range []string{"x", "=y", "x="} {
		if _, err := ParseMap([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzPlanFolders: any folder names map to unique, non-empty target names
// that use the target separator only between non-empty parts.
func FuzzPlanFolders(f *testing.F) {
	f.Add("INBOX.Sent.2023\nINBOX.sent\nINBOX.Clients.Müller GmbH", ".", "INBOX.")
	f.Add("a/b\nA/B\nCalendar\n/x//y", "/", "")
	f.Fuzz(func(t *testing.T, names, delim, prefix string) {
		if delim == "" || !utf8.ValidString(names) {
			return
		}
		d, _ := utf8.DecodeRuneInString(delim)
		var src []SourceFolder
		for _, n := range strings.Split(names, "\n") {
			if n != "" {
				src = append(src, SourceFolder{Name: n})
			}
		}
		seen := map[string]bool{}
		for _, p := range PlanFolders(src, prefix, d, '/', FolderRules{}) {
			if p.Skip != "" {
				continue
			}
			lower := strings.ToLower(p.Target)
			if p.Target == "" || seen[lower] {
				t.Fatalf("%q → %q: empty or duplicate", p.Source, p.Target)
			}
			seen[lower] = true
			for _, part := range strings.Split(p.Target, "/") {
				if strings.TrimSpace(part) == "" {
					t.Fatalf("%q → %q: empty part", p.Source, p.Target)
				}
			}
		}
	})
}

func TestSafeFolderName(t *testing.T) {
	for in, want := range map[string]string{
		"Files":           "Files (migrated)",
		"a/b*c":           "a/b_c (migrated)",
		"Projekt \"X\"/Ü": "Projekt _X_/Ü (migrated)",
	} {
		if got := safeFolderName(in, '/'); got != want {
			t.Errorf("%q → %q, want %q", in, got, want)
		}
	}
}

func TestPlanFoldersCollisionMovesChildren(t *testing.T) {
	src := []SourceFolder{{Name: "Projects"}, {Name: "Projects/2024"}, {Name: "projects"}, {Name: "projects/2024"}, {Name: "projects/2024/Q1"}}
	want := map[string]string{"Projects": "Projects", "Projects/2024": "Projects/2024", "projects": "projects (2)",
		"projects/2024": "projects (2)/2024", "projects/2024/Q1": "projects (2)/2024/Q1"}
	for _, p := range PlanFolders(src, "", '/', '/', FolderRules{}) {
		if p.Target != want[p.Source] {
			t.Errorf("%q → %q, want %q", p.Source, p.Target, want[p.Source])
		}
	}
}
