package proxy

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"
)

// Verifiers keeps one password verifier per mailbox: a salted argon2id hash
// of the password of the user's last successful login through the source,
// in PHC string form ("$argon2id$v=19$m=…,t=…,p=…$salt$hash"). The proxy
// checks passwords against it after cutover. store.Store implements it
// durably. Implementations must be safe for concurrent use.
type Verifiers interface {
	// Verifier returns the verifier stored for the mailbox with this
	// (lower-case) email, or "" if there is none.
	Verifier(email string) (string, error)
	// SetVerifier stores a verifier, replacing the previous one.
	SetVerifier(email, verifier string) error
}

// argon2id parameters: OWASP's recommended minimum (19 MiB, 2 passes).
// Tests make them cheaper.
var argonParams = struct {
	time, memory uint32
	threads      uint8
}{time: 2, memory: 19 * 1024, threads: 1}

const (
	argonSaltLen = 16
	argonKeyLen  = 32
)

// credentials records and checks password verifiers. Hashing is slow and
// memory-hungry on purpose, so at most GOMAXPROCS hashes run at once, and
// passwords already checked by this process are recognised by an HMAC
// under a key that never leaves memory (clients reconnect often).
type credentials struct {
	store Verifiers
	sem   chan struct{}
	key   [32]byte

	mu    sync.Mutex
	known map[string][32]byte // email → HMAC of its last good password
}

func newCredentials(store Verifiers) *credentials {
	c := &credentials{store: store, sem: make(chan struct{}, runtime.GOMAXPROCS(0)), known: map[string][32]byte{}}
	if _, err := rand.Read(c.key[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return c
}

func (c *credentials) mac(email, password string) [32]byte {
	h := hmac.New(sha256.New, c.key[:])
	h.Write([]byte(email))
	h.Write([]byte{0})
	h.Write([]byte(password))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

func (c *credentials) isKnown(email, password string) bool {
	m := c.mac(email, password)
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.known[email]
	return ok && hmac.Equal(k[:], m[:])
}

func (c *credentials) remember(email, password string) {
	m := c.mac(email, password)
	c.mu.Lock()
	c.known[email] = m
	c.mu.Unlock()
}

// record stores a verifier of a password the source has just accepted,
// unless this process already stored one for the same password.
func (c *credentials) record(email, password string) error {
	email = strings.ToLower(email)
	if c.isKnown(email, password) {
		return nil
	}
	v, err := c.hash(password)
	if err != nil {
		return err
	}
	if err := c.store.SetVerifier(email, v); err != nil {
		return err
	}
	c.remember(email, password)
	return nil
}

// verify checks a password against the stored verifier. known reports
// whether there is one.
func (c *credentials) verify(email, password string) (ok, known bool, err error) {
	email = strings.ToLower(email)
	if c.isKnown(email, password) {
		return true, true, nil
	}
	v, err := c.store.Verifier(email)
	if err != nil || v == "" {
		return false, false, err
	}
	ok, err = c.check(v, password)
	if ok {
		c.remember(email, password)
	}
	return ok, err == nil, err
}

func (c *credentials) hash(password string) (string, error) {
	salt := make([]byte, argonSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", err
	}
	p := argonParams
	c.sem <- struct{}{}
	key := argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, argonKeyLen)
	<-c.sem
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads,
		enc.EncodeToString(salt), enc.EncodeToString(key)), nil
}

var errBadVerifier = errors.New("malformed password verifier")

func (c *credentials) check(verifier, password string) (bool, error) {
	parts := strings.Split(verifier, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return false, errBadVerifier
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadVerifier
	}
	var (
		mem, t  uint32
		threads uint8
	)
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &t, &threads); err != nil || t == 0 || threads == 0 || mem > 1<<22 {
		return false, errBadVerifier
	}
	enc := base64.RawStdEncoding
	salt, err := enc.DecodeString(parts[4])
	if err != nil {
		return false, errBadVerifier
	}
	want, err := enc.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadVerifier
	}
	c.sem <- struct{}{}
	got := argon2.IDKey([]byte(password), salt, t, mem, threads, uint32(len(want)))
	<-c.sem
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// limiter counts failed logins per key (client IP or user) in fixed
// windows.
type limiter struct {
	max    int // <= 0: no limit
	window time.Duration

	mu sync.Mutex
	m  map[string]*failures
}

type failures struct {
	n     int
	start time.Time
}

// limiterPruneAt is the map size from which expired entries are swept.
const limiterPruneAt = 10000

func newLimiter(max int, window time.Duration) *limiter {
	return &limiter{max: max, window: window, m: map[string]*failures{}}
}

func (l *limiter) blocked(key string) bool {
	if l.max <= 0 || key == "" {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.m[key]
	return f != nil && time.Since(f.start) < l.window && f.n >= l.max
}

func (l *limiter) fail(key string) {
	if l.max <= 0 || key == "" {
		return
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.m) >= limiterPruneAt {
		for k, f := range l.m {
			if now.Sub(f.start) >= l.window {
				delete(l.m, k)
			}
		}
	}
	f := l.m[key]
	if f == nil || now.Sub(f.start) >= l.window {
		f = &failures{start: now}
		l.m[key] = f
	}
	f.n++
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.m, key)
}
