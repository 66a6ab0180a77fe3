package config

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// LoadFile decodes the TOML config file at path into o, reporting every
// problem at once: a syntax error with its line and column (the file can't be
// read past it), or else each unknown key and each value of the wrong type
// with its line, as *KeyError joined with errors.Join. Keys are the long
// flag names with "-" replaced by "_". Relative paths in the file are
// relative to the file's directory, not the current one.
func LoadFile(path string, o *Options) error {
	_, err := loadFile(path, o)
	return err
}

// Check is `mailferry config check FILE`: LoadFile and Validate on
// Defaults, then loading the mailbox list the file names. It returns every
// error at once; problems with a key the file sets carry the key's line.
func Check(path string) error {
	o := Defaults()
	lines, err := loadFile(path, &o)
	if lines == nil {
		return err // nothing decoded: Validate would only add noise
	}
	errs := unjoin(err)
	failed := map[string]bool{}
	for _, e := range errs {
		var ke *KeyError
		if errors.As(e, &ke) {
			failed[ke.Key] = true
		}
	}
	for _, e := range unjoin(o.Validate()) {
		var ke *KeyError
		if !errors.As(e, &ke) {
			errs = append(errs, e)
			continue
		}
		if failed[ke.Key] {
			continue // the file's value was rejected already; the default isn't the admin's
		}
		ke.File, ke.Line = path, lines[ke.Key]
		errs = append(errs, ke)
	}
	if o.Mailboxes != "" && !failed["mailboxes"] {
		if _, err := LoadMailboxes(o.Mailboxes); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unjoin returns the errors inside an errors.Join, or err itself.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err != nil {
		return []error{err}
	}
	return nil
}

// loadFile is LoadFile that also returns the line of each key, or nil if the
// file couldn't be read or parsed.
func loadFile(path string, o *Options) (map[string]int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	return decodeFile(data, path, o)
}

// decodeFile is loadFile on the file's contents.
func decodeFile(data []byte, path string, o *Options) (map[string]int, error) {
	var values map[string]toml.Primitive
	md, err := toml.Decode(string(data), &values)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, &KeyError{File: path, Line: pe.Position.Line, Column: pe.Position.Col, Err: syntaxError{pe}}
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}

	lines := make(map[string]int, len(values))
	keys := make([]string, 0, len(values))
	for k, v := range values {
		lines[k] = keyLine(&md, v)
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return cmp.Or(lines[a]-lines[b], strings.Compare(a, b)) })

	known := map[string]option{}
	for _, op := range o.options() {
		if op.name != "config" {
			known[op.key()] = op
		}
	}
	var errs []error
	for _, k := range keys {
		op, ok := known[k]
		if !ok {
			errs = append(errs, &KeyError{File: path, Line: lines[k], Key: k, Err: unknownKey(k)})
			continue
		}
		var v any
		err := md.PrimitiveDecode(values[k], &v)
		if err == nil {
			err = set(op.ptr, v)
		}
		if err != nil {
			errs = append(errs, &KeyError{File: path, Line: lines[k], Key: k, Err: err})
			continue
		}
		if s, ok := op.ptr.(*string); ok && op.path && *s != "" && !filepath.IsAbs(*s) {
			*s = filepath.Join(filepath.Dir(path), *s)
		}
	}
	return lines, errors.Join(errs...)
}

// syntaxError is a toml.ParseError without its "toml: line N" prefix, which
// KeyError already gives.
type syntaxError struct{ toml.ParseError }

func (e syntaxError) Error() string { return e.Message }
func (e syntaxError) Unwrap() error { return e.ParseError }

func unknownKey(k string) error {
	switch {
	case k == "config":
		return errors.New("only a command-line flag, not a config file key")
	case strings.Contains(k, "-"):
		return fmt.Errorf("unknown key; did you mean %s?", strings.ReplaceAll(k, "-", "_"))
	}
	return errors.New("unknown key")
}

// locator always fails, on purpose: toml wraps the failure in a ParseError
// holding the value's position, which MetaData doesn't otherwise expose.
type locator struct{}

func (*locator) UnmarshalTOML(any) error { return errors.New("locate") }

// keyLine returns the line of v's value in the file, or 0 if toml doesn't know
// it (a table made implicitly by a dotted key). Only the line: toml's column
// for a table is not the table's.
func keyLine(md *toml.MetaData, v toml.Primitive) int {
	var pe toml.ParseError
	if errors.As(md.PrimitiveDecode(v, &locator{}), &pe) {
		return pe.Position.Line
	}
	return 0
}

// set stores a decoded TOML value in the field ptr, checking its type
// strictly: a quoted number is a mistake worth reporting, not guessing.
func set(ptr, v any) error {
	switch p := ptr.(type) {
	case *string:
		return assign(p, v, "a string")
	case *time.Duration:
		var str string
		if err := assign(&str, v, `a duration like "5m"`); err != nil {
			return err
		}
		d, err := time.ParseDuration(str)
		if err != nil {
			return want(`a duration like "5m" or "1h30m"`, v)
		}
		*p = d
	case *Secret:
		var str string
		if err := assign(&str, v, "a string"); err != nil {
			return err
		}
		*p = Secret(str)
	case *bool:
		return assign(p, v, "true or false")
	case *int:
		n, ok := v.(int64)
		if !ok || int64(int(n)) != n {
			return want("an integer", v)
		}
		*p = int(n)
	case *[]string:
		list, ok := v.([]any)
		if !ok {
			return want(`an array of strings, like ["a", "b"]`, v)
		}
		strs := make([]string, len(list))
		for i, e := range list {
			if err := assign(&strs[i], e, "an array of strings"); err != nil {
				return err
			}
		}
		*p = strs
	case *ByteSize:
		switch v := v.(type) {
		case int64:
			*p = ByteSize(v)
		case string:
			return p.UnmarshalText([]byte(v))
		default:
			return want(`a size like "35MB"`, v)
		}
	case *Date:
		switch v := v.(type) {
		case string:
			return p.UnmarshalText([]byte(v))
		case time.Time:
			h, m, s := v.Clock()
			if h != 0 || m != 0 || s != 0 || v.Nanosecond() != 0 {
				return want("a date without time, like 2024-01-31", v)
			}
			*p = Date{time.Date(v.Year(), v.Month(), v.Day(), 0, 0, 0, 0, time.UTC)}
		default:
			return want("a date like 2024-01-31", v)
		}
	}
	return nil
}

func assign[T any](p *T, v any, what string) error {
	t, ok := v.(T)
	if !ok {
		return want(what, v)
	}
	*p = t
	return nil
}

func want(what string, v any) error {
	got := "a table"
	switch v.(type) {
	case string:
		got = "a string"
	case int64:
		got = "an integer"
	case float64:
		got = "a float"
	case bool:
		got = "a boolean"
	case time.Time:
		got = "a date-time"
	case []any, []map[string]any:
		got = "an array"
	}
	return fmt.Errorf("want %s, got %s", what, got)
}
