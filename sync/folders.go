package sync

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/emersion/go-imap/v2"
)

// FolderRules are the admin's overrides of the default folder mapping.
// Names in rules use "/" as separator and no namespace prefix, whatever the
// source server uses ("Projects/2024", not "INBOX.Projects.2024").
type FolderRules struct {
	// Map renames a folder and, with it, its subfolders.
	Map map[string]string
	// Include, when not empty, copies only folders matching one of them.
	Include []*regexp.Regexp
	// Exclude leaves out folders matching any of them.
	Exclude []*regexp.Regexp
}

// ParseMap turns "Old=New" entries into a rename map.
func ParseMap(entries []string) (map[string]string, error) {
	m := make(map[string]string, len(entries))
	for _, e := range entries {
		old, repl, ok := strings.Cut(e, "=")
		old, repl = strings.Trim(old, " /"), strings.Trim(repl, " /")
		if !ok || old == "" || repl == "" {
			return nil, fmt.Errorf("folder map %q: want Old=New", e)
		}
		m[old] = repl
	}
	return m, nil
}

// SourceFolder is a folder as the source lists it.
type SourceFolder struct {
	Name       string
	Delim      rune
	Attrs      []imap.MailboxAttr
	Subscribed bool
}

// FolderPlan says where one source folder goes.
type FolderPlan struct {
	Source string
	// Path is the source name without namespace prefix, "/"-separated: what
	// rules match and reports show.
	Path string
	// Target is the folder's name on the target ("" when skipped).
	Target     string
	Subscribed bool
	// Skip, when not empty, says why the folder is not copied.
	Skip string
	// Renamed, when not empty, says why Target differs from the default.
	Renamed string
}

// Exchange Online's default folders, and what the special-use attributes and
// the names other servers use map to.
const (
	exInbox   = "INBOX"
	exSent    = "Sent Items"
	exTrash   = "Deleted Items"
	exJunk    = "Junk Email"
	exDrafts  = "Drafts"
	exArchive = "Archive"
)

var specialUseTarget = map[imap.MailboxAttr]string{
	imap.MailboxAttrSent:    exSent,
	imap.MailboxAttrTrash:   exTrash,
	imap.MailboxAttrJunk:    exJunk,
	imap.MailboxAttrDrafts:  exDrafts,
	imap.MailboxAttrArchive: exArchive,
}

// wellKnownNames are matched case-insensitively on top-level folders that
// carry no special-use attribute.
var wellKnownNames = map[string]string{
	"sent": exSent, "sent items": exSent, "sent messages": exSent, "sent mail": exSent,
	"sent-mail": exSent, "gesendet": exSent, "gesendete objekte": exSent, "envoyés": exSent,
	"trash": exTrash, "deleted items": exTrash, "deleted messages": exTrash, "deleted": exTrash,
	"bin": exTrash, "papierkorb": exTrash, "corbeille": exTrash,
	"junk": exJunk, "spam": exJunk, "junk email": exJunk, "junk e-mail": exJunk, "junk mail": exJunk,
	"bulk mail": exJunk,
	"drafts":    exDrafts, "draft": exDrafts, "entwürfe": exDrafts, "brouillons": exDrafts,
	"archive": exArchive, "archives": exArchive, "archiv": exArchive,
}

// reservedTargetNames are top-level names that Exchange Online keeps for
// itself or for non-mail items: mail must never land in them.
var reservedTargetNames = []string{
	"Calendar", "Contacts", "Tasks", "Notes", "Journal", "Conversation History",
	"Outbox", "Sync Issues", "Files", "RSS Feeds", "Conversation Action Settings",
	"Quick Step Settings", "Social Activity Notifications", "Yammer Root",
}

// PlanFolders maps source folders to target names. prefix and delim describe
// the source's personal namespace; targetDelim is the target's separator.
// The result is sorted by source name and deterministic: the same input
// always gives the same names, including the renames that resolve
// collisions.
func PlanFolders(folders []SourceFolder, prefix string, delim rune, targetDelim rune, rules FolderRules) []FolderPlan {
	sorted := slices.Clone(folders)
	slices.SortFunc(sorted, func(a, b SourceFolder) int { return strings.Compare(a.Name, b.Name) })
	sorted = slices.CompactFunc(sorted, func(a, b SourceFolder) bool { return a.Name == b.Name })

	// Special-use folders, found by attribute first, then by name.
	special := map[string]string{} // source path → target top-level name
	taken := map[string]bool{}
	for _, f := range sorted {
		for _, a := range f.Attrs {
			if t, ok := specialUseTarget[a]; ok && !taken[t] {
				special[sourcePath(f.Name, prefix, delim)] = t
				taken[t] = true
				break
			}
		}
	}
	for _, f := range sorted {
		p := sourcePath(f.Name, prefix, delim)
		if strings.Contains(p, "/") || special[p] != "" || strings.EqualFold(p, exInbox) {
			continue
		}
		if t, ok := wellKnownNames[strings.ToLower(p)]; ok && !taken[t] {
			special[p] = t
			taken[t] = true
		}
	}

	var plans []FolderPlan
	used := map[string]string{}  // lower-case target name → source path
	moved := map[string]string{} // lower-case default target → where a collision put it
	sep := "/"
	if targetDelim != 0 {
		sep = string(targetDelim)
	}
	for _, f := range sorted {
		p := sourcePath(f.Name, prefix, delim)
		plan := FolderPlan{Source: f.Name, Path: p, Subscribed: f.Subscribed}
		switch {
		case hasAttr(f.Attrs, imap.MailboxAttrNoSelect) || hasAttr(f.Attrs, imap.MailboxAttrNonExistent):
			plan.Skip = "not selectable"
		case !rules.included(p):
			plan.Skip = "excluded by rule"
		}
		if plan.Skip != "" {
			plans = append(plans, plan)
			continue
		}
		target, renamed := legalTarget(targetPath(p, special, rules.Map), targetDelim)
		// Subfolders follow a parent that a collision renamed (sorted
		// names put parents first).
		def := target
		parts := strings.Split(target, sep)
		for i := len(parts) - 1; i > 0; i-- {
			if to, ok := moved[strings.ToLower(strings.Join(parts[:i], sep))]; ok {
				target = strings.Join(append([]string{to}, parts[i:]...), sep)
				break
			}
		}
		base := target
		for n := 2; isUsed(used, target); n++ {
			target = fmt.Sprintf("%s (%d)", base, n)
			renamed = fmt.Sprintf("name collides with %q on the target", used[strings.ToLower(base)])
		}
		if target != def {
			moved[strings.ToLower(def)] = target
		}
		used[strings.ToLower(target)] = p
		plan.Target, plan.Renamed = target, renamed
		plans = append(plans, plan)
	}
	return plans
}

func isUsed(used map[string]string, name string) bool {
	_, ok := used[strings.ToLower(name)]
	return ok
}

func hasAttr(attrs []imap.MailboxAttr, want imap.MailboxAttr) bool {
	for _, a := range attrs {
		if strings.EqualFold(string(a), string(want)) {
			return true
		}
	}
	return false
}

func (r FolderRules) included(path string) bool {
	for _, re := range r.Exclude {
		if re.MatchString(path) {
			return false
		}
	}
	if len(r.Include) == 0 {
		return true
	}
	for _, re := range r.Include {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

// sourcePath strips the namespace prefix and turns the source separator into
// "/". A "/" inside a source name part (legal on "." servers) becomes "∕"
// (U+2215) so that it can't split the path.
func sourcePath(name, prefix string, delim rune) string {
	if strings.EqualFold(name, exInbox) {
		return exInbox
	}
	if prefix != "" && strings.HasPrefix(strings.ToUpper(name), strings.ToUpper(prefix)) {
		name = name[len(prefix):]
	}
	if delim == 0 || delim == '/' {
		return name
	}
	parts := strings.Split(name, string(delim))
	for i, p := range parts {
		parts[i] = strings.ReplaceAll(p, "/", "∕")
	}
	return strings.Join(parts, "/")
}

// targetPath applies the admin's map (longest matching ancestor wins), then
// the special-use names; subfolders follow their parent.
func targetPath(path string, special, rename map[string]string) string {
	parts := strings.Split(path, "/")
	for _, names := range []map[string]string{rename, special} {
		for i := len(parts); i > 0; i-- {
			if to, ok := names[strings.Join(parts[:i], "/")]; ok {
				return joinPath(to, parts[i:])
			}
		}
	}
	if strings.EqualFold(parts[0], exInbox) {
		return joinPath(exInbox, parts[1:])
	}
	return path
}

func joinPath(head string, rest []string) string {
	return strings.Join(append([]string{head}, rest...), "/")
}

// legalTarget makes a "/"-separated path acceptable to the target: no empty
// parts, no reserved top-level names, the target's own separator.
func legalTarget(path string, targetDelim rune) (string, string) {
	var why string
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.TrimSpace(p) == "" {
			parts[i] = "_"
			why = "empty name part"
		}
		if targetDelim != '/' && targetDelim != 0 && strings.ContainsRune(p, targetDelim) {
			parts[i] = strings.ReplaceAll(parts[i], string(targetDelim), "_")
			why = fmt.Sprintf("name contains the target's separator %q", targetDelim)
		}
	}
	for _, r := range reservedTargetNames {
		if strings.EqualFold(parts[0], r) {
			parts[0] += " (migrated)"
			why = fmt.Sprintf("%q is reserved on Exchange Online", r)
			break
		}
	}
	sep := "/"
	if targetDelim != 0 {
		sep = string(targetDelim)
	}
	return strings.Join(parts, sep), why
}

// safeFolderName is the fallback for a name the target refuses: every
// character but letters, digits, space and "-_.,()&'" becomes "_" in each
// part, and the last part gets " (migrated)" so that it can't be a
// reserved name either.
func safeFolderName(name string, delim rune) string {
	sep := string(delim)
	if delim == 0 {
		sep = "/"
	}
	parts := strings.Split(name, sep)
	for i, p := range parts {
		parts[i] = strings.Map(func(r rune) rune {
			if unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(" -_.,()&'", r) {
				return r
			}
			return '_'
		}, p)
	}
	parts[len(parts)-1] += " (migrated)"
	return strings.Join(parts, sep)
}
