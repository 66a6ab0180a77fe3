package config

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"os"
	"strings"
	"unicode/utf8"
)

// Exchange Online's limits for one IMAP migration CSV; mailferry keeps them so
// a list that works here also works there.
const (
	maxRows      = 50000
	maxListBytes = 10 << 20
)

// Mailbox is one row of the mailbox list.
type Mailbox struct {
	Email          string // EmailAddress column: the mailbox's identity everywhere (store keys, reports, target login)
	UserName       string // source login, passed as written (admin forms like "user*admin" or "DOMAIN/admin/user" are fine)
	Password       Secret
	UserRoot       string // optional (Courier/Oracle admin logins)
	TargetUserName string // optional: password login on non-Office-365 targets
	TargetPassword Secret // optional
	Line           int    // line in the CSV file (1-based, header is line 1) for error messages
}

// RowError is a problem in one row or cell of the mailbox list. It never
// quotes a cell's value (a shifted column could put a password anywhere), only
// where the cell is, so the admin looks it up.
type RowError struct {
	File   string
	Line   int    // 1-based line in File
	Column int    // 1-based field number (Excel's column A is 1); 0 if the whole row is meant
	Field  string // column name, e.g. "UserName"; "" if the whole row is meant
	Msg    string
}

// Error returns "users.csv:7:2: UserName: empty", leaving out what is unset.
func (e *RowError) Error() string {
	s := fmt.Sprintf("%s:%d", e.File, e.Line)
	if e.Column > 0 {
		s += fmt.Sprintf(":%d", e.Column)
	}
	if e.Field != "" {
		s += ": " + e.Field
	}
	return s + ": " + e.Msg
}

// ListError collects every RowError of a mailbox list. ReadMailboxes still
// returns the valid rows alongside it, unless the file as a whole is unusable
// (bad header, too many rows).
type ListError struct {
	Errors []*RowError
}

// Error lists every RowError, one per line.
func (e *ListError) Error() string {
	lines := make([]string, len(e.Errors))
	for i, re := range e.Errors {
		lines[i] = re.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the RowErrors, for errors.As.
func (e *ListError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, re := range e.Errors {
		errs[i] = re
	}
	return errs
}

// LoadMailboxes reads the mailbox list at path; see ReadMailboxes.
func LoadMailboxes(path string) ([]Mailbox, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("mailbox list: %w", err)
	}
	defer f.Close()
	return ReadMailboxes(f, path)
}

// ReadMailboxes reads a mailbox list in Exchange Online's CSV format from r;
// file names it in errors. It accepts what Excel writes: a UTF-8 BOM, CRLF,
// ";" instead of "," as separator, quoted fields, blank lines. Each Email's
// domain is lower-cased. A row with a problem is left out and reported in a
// *ListError; the other rows are returned with it, unless the file as a whole
// is unusable (bad header, more than 50,000 rows): then none are. Files over
// 10 MB are refused.
func ReadMailboxes(r io.Reader, file string) ([]Mailbox, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxListBytes+1))
	if err != nil {
		return nil, fmt.Errorf("mailbox list %s: %w", file, err)
	}
	if len(data) > maxListBytes {
		return nil, fmt.Errorf("mailbox list %s: larger than 10 MB, the Exchange Online limit", file)
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))

	lr := &listReader{file: file, cr: newCSVReader(data, sniff(data)), seen: map[string]int{}}
	if !lr.readHeader() {
		return nil, &ListError{lr.errs}
	}
	var list []Mailbox
	rows := 0
	for {
		rec, err := lr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("mailbox list %s: %w", file, err)
		}
		if rec == nil {
			continue // syntax error, already recorded
		}
		rows++
		if rows > maxRows {
			lr.fail(lr.line(0), -1, "", fmt.Sprintf("more than %d rows, the Exchange Online limit", maxRows))
			return nil, &ListError{lr.errs}
		}
		if m, ok := lr.mailbox(rec); ok {
			list = append(list, m)
		}
	}
	if lr.errs != nil {
		return list, &ListError{lr.errs}
	}
	return list, nil
}

// column is a mailbox-list column.
type column int

const (
	colEmail column = iota
	colUserName
	colPassword
	colUserRoot
	colTargetUserName
	colTargetPassword
	numColumns

	noColumn column = -1 // a field under an empty header cell
)

// columnNames are Exchange's spellings, also used in errors.
var columnNames = [numColumns]string{"EmailAddress", "UserName", "Password", "UserRoot", "TargetUserName", "TargetPassword"}

func (c column) String() string { return columnNames[c] }

// lookupColumn finds a header cell's column, ignoring case and spaces.
func lookupColumn(name string) (column, bool) {
	name = strings.TrimSpace(name)
	for c, n := range columnNames {
		if strings.EqualFold(name, n) {
			return column(c), true
		}
	}
	return noColumn, false
}

func newCSVReader(data []byte, sep rune) *csv.Reader {
	cr := csv.NewReader(bytes.NewReader(data))
	cr.Comma = sep
	cr.FieldsPerRecord = -1 // counts are checked per row, for better errors
	return cr
}

// sniff returns the separator that splits the header into more known column
// names: Excel writes ";" where "," is the decimal mark.
func sniff(data []byte) rune {
	best, most := ',', -1
	for _, sep := range []rune{',', ';'} {
		rec, _ := nextRecord(newCSVReader(data, sep))
		n := 0
		for _, f := range rec {
			if _, ok := lookupColumn(f); ok {
				n++
			}
		}
		if n > most {
			best, most = sep, n
		}
	}
	return best
}

// nextRecord skips blank records: csv skips empty lines, but Excel also
// writes ",,," or spaces for rows it considers used.
func nextRecord(cr *csv.Reader) ([]string, error) {
	for {
		rec, err := cr.Read()
		if err != nil || !blank(rec) {
			return rec, err
		}
	}
}

func blank(rec []string) bool {
	for _, f := range rec {
		if strings.TrimSpace(f) != "" {
			return false
		}
	}
	return true
}

// listReader reads one mailbox list, collecting errors as it goes.
type listReader struct {
	file  string
	cr    *csv.Reader
	cols  []column        // column of each field, from the header
	index [numColumns]int // field of each column, -1 if absent
	seen  map[string]int  // lower-cased email → line, for duplicates
	errs  []*RowError
}

// fail records a problem with field (0-based; -1 for the whole row) on line.
func (lr *listReader) fail(line, field int, name, msg string) {
	lr.errs = append(lr.errs, &RowError{File: lr.file, Line: line, Column: field + 1, Field: name, Msg: msg})
}

// line is the line of the current record's field i (fields may span lines).
func (lr *listReader) line(i int) int {
	l, _ := lr.cr.FieldPos(i)
	return l
}

// next returns the next non-blank record, or nil after recording a syntax
// error; the csv reader carries on with the following line.
func (lr *listReader) next() ([]string, error) {
	rec, err := nextRecord(lr.cr)
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		msg := fmt.Sprintf("%v at character %d", pe.Err, pe.Column)
		if pe.Line != pe.StartLine {
			msg = fmt.Sprintf("%v on line %d, character %d", pe.Err, pe.Line, pe.Column)
		}
		lr.fail(pe.StartLine, -1, "", msg)
		return nil, nil
	}
	return rec, err
}

// readHeader maps the header's fields to columns and reports whether rows
// can be read with it.
func (lr *listReader) readHeader() bool {
	rec, err := lr.next()
	if err != nil {
		lr.fail(1, -1, "", "no header row (want EmailAddress,UserName,Password)")
	}
	if rec == nil {
		return false
	}
	for c := range lr.index {
		lr.index[c] = -1
	}
	lr.cols = make([]column, len(rec))
	for i, name := range rec {
		c, ok := lookupColumn(name)
		switch {
		case strings.TrimSpace(name) == "":
			c = noColumn // Excel adds these for formatted but empty columns
		case !ok:
			lr.fail(lr.line(i), i, "", fmt.Sprintf("unknown column %q (known: %s)", strings.TrimSpace(name), strings.Join(columnNames[:], ", ")))
		case lr.index[c] >= 0:
			lr.fail(lr.line(i), i, c.String(), fmt.Sprintf("duplicate column (also column %d)", lr.index[c]+1))
		default:
			lr.index[c] = i
		}
		lr.cols[i] = c
	}
	for c := colEmail; c <= colPassword; c++ {
		if lr.index[c] < 0 {
			lr.fail(lr.line(0), -1, c.String(), "missing required column")
		}
	}
	return lr.errs == nil
}

// mailbox checks one record and reports whether it is a usable Mailbox.
func (lr *listReader) mailbox(rec []string) (Mailbox, bool) {
	n := len(lr.errs)
	if len(rec) != len(lr.cols) {
		lr.fail(lr.line(0), -1, "", fmt.Sprintf("%d fields, but the header has %d", len(rec), len(lr.cols)))
		return Mailbox{}, false
	}
	var v [numColumns]string
	for i, f := range rec {
		c := lr.cols[i]
		switch {
		case c == noColumn:
			if strings.TrimSpace(f) != "" {
				lr.fail(lr.line(i), i, "", "value in a column without a header")
			}
			continue
		case c == colPassword || c == colTargetPassword:
			v[c] = f // spaces may be part of a password
		default:
			v[c] = strings.TrimSpace(f)
		}
		if !utf8.ValidString(f) {
			lr.fail(lr.line(i), i, c.String(), `not UTF-8 text (in Excel, save as "CSV UTF-8")`)
		}
	}
	lr.require(v, colEmail, colUserName, colPassword)
	lr.pair(v, colTargetUserName, colTargetPassword)
	lr.pair(v, colTargetPassword, colTargetUserName)

	m := Mailbox{
		Email:          v[colEmail],
		UserName:       v[colUserName],
		Password:       Secret(v[colPassword]),
		UserRoot:       v[colUserRoot],
		TargetUserName: v[colTargetUserName],
		TargetPassword: Secret(v[colTargetPassword]),
		Line:           lr.line(0),
	}
	if m.Email != "" {
		lr.checkEmail(&m)
	}
	return m, len(lr.errs) == n
}

// require reports each of cols that is empty.
func (lr *listReader) require(v [numColumns]string, cols ...column) {
	for _, c := range cols {
		if v[c] == "" && lr.index[c] >= 0 {
			lr.fail(lr.line(lr.index[c]), lr.index[c], c.String(), "empty")
		}
	}
}

// pair reports a set c whose partner is empty: one without the other can't log in.
func (lr *listReader) pair(v [numColumns]string, c, partner column) {
	if v[c] != "" && v[partner] == "" {
		i := lr.index[partner]
		line := lr.line(0)
		if i >= 0 {
			line = lr.line(i)
		}
		lr.fail(line, i, partner.String(), "empty, but "+c.String()+" is set")
	}
}

// checkEmail validates m.Email, normalises its domain to lower case and
// reports duplicates, which are caught even if the row has other problems.
func (lr *listReader) checkEmail(m *Mailbox) {
	i := lr.index[colEmail]
	a, err := mail.ParseAddress(m.Email)
	if err != nil || a.Name != "" || a.Address != m.Email {
		lr.fail(lr.line(i), i, colEmail.String(), "not a plain email address like user@example.com")
		return
	}
	at := strings.LastIndexByte(m.Email, '@')
	m.Email = m.Email[:at+1] + strings.ToLower(m.Email[at+1:])
	key := strings.ToLower(m.Email)
	if first, ok := lr.seen[key]; ok {
		lr.fail(lr.line(i), i, colEmail.String(), fmt.Sprintf("duplicate of line %d", first))
		return
	}
	lr.seen[key] = m.Line
}
