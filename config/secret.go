package config

import (
	"fmt"
	"io"
)

const redacted = "[redacted]"

// Secret is a password or token. It never prints: String, GoString and every
// fmt verb give "[redacted]", and MarshalJSON and MarshalText give the same,
// so a Secret can't leak into logs, reports or errors by accident (fmt, zap
// and encoding/json all go through these methods; only don't make it a map
// key, which encoding/json writes as is). Reveal returns the value.
type Secret string

// Reveal returns the secret itself, for the one place that needs it (a login).
func (s Secret) Reveal() string { return string(s) }

// String returns "[redacted]".
func (Secret) String() string { return redacted }

// GoString returns "[redacted]", so %#v of a struct holding a Secret is safe.
func (Secret) GoString() string { return redacted }

// Format writes "[redacted]" for every verb; fmt prefers it over String.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, redacted) }

// MarshalJSON returns the JSON string "[redacted]".
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[redacted]", for text encoders such as XML and TOML.
func (Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// Set makes *Secret a flag value.
func (s *Secret) Set(v string) error { *s = Secret(v); return nil }

// Type names the flag value in --help.
func (*Secret) Type() string { return "secret" }
