package proxy

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t)

	t.Run("ok", func(t *testing.T) {
		c := login(t, e.addr, alice, alicePass, nil)
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := c.Logout().Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("by user name and by email, any case", func(t *testing.T) {
		for _, name := range []string{"bob", "BOB", bob, strings.ToUpper(bob)} {
			c := login(t, e.addr, name, bobPass, nil)
			if _, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait(); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		}
	})
	t.Run("authenticate plain", func(t *testing.T) {
		c := dial(t, e.addr, nil)
		if err := c.Authenticate(sasl.NewPlainClient("", alice, alicePass)); err != nil {
			t.Fatal(err)
		}
		if _, err := c.List("", "*", nil).Collect(); err != nil {
			t.Fatal(err)
		}
		c2 := dial(t, e.addr, nil)
		if err := c2.Authenticate(sasl.NewPlainClient("", alice, "nope")); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
			t.Fatalf("wrong password: %v", err)
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		c := dial(t, e.addr, nil)
		start := time.Now()
		err := c.Login(alice, "wrong").Wait()
		if imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
			t.Fatalf("got %v", err)
		}
		if d := time.Since(start); d < 20*time.Millisecond {
			t.Errorf("answered after %v, before the failure delay", d)
		}
		// The connection stays usable.
		if err := c.Login(alice, alicePass).Wait(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unknown user", func(t *testing.T) {
		c := dial(t, e.addr, nil)
		// twin exists on the source but is not in the mailbox list.
		for _, u := range []string{"mallory@example.com", twin} {
			if err := c.Login(u, twinPass).Wait(); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
				t.Fatalf("%s: got %v", u, err)
			}
		}
	})
	t.Run("capabilities", func(t *testing.T) {
		c := dial(t, e.addr, nil)
		before := c.Caps()
		if err := c.Login(alice, alicePass).Wait(); err != nil {
			t.Fatal(err)
		}
		after := c.Caps()
		for _, cp := range []imap.Cap{"ID", imap.CapCondStore, imap.CapQResync, imap.CapESearch, imap.CapListExtended, imap.CapIMAP4rev2, imap.CapBinary, imap.CapStatusSize, imap.CapAppendLimit, imap.CapLoginDisabled} {
			if before.Has(cp) || after.Has(cp) {
				t.Errorf("advertises %s", cp)
			}
		}
		for _, cp := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIdle, imap.CapUIDPlus, imap.CapMove, imap.CapNamespace, imap.CapSpecialUse, imap.CapUnselect, imap.CapChildren, imap.CapLiteralPlus} {
			if !after.Has(cp) {
				t.Errorf("does not advertise %s after login", cp)
			}
		}
		if !before.Has("AUTH=PLAIN") {
			t.Error("no AUTH=PLAIN before login")
		}
	})
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(_ *env, o *Options) {
		o.MaxFailuresPerUser = 3
		o.MaxFailuresPerIP = 6
		o.FailureDelay = -1
	})
	c := dial(t, e.addr, nil)
	for range 3 {
		if err := c.Login(alice, "guess").Wait(); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
			t.Fatalf("got %v", err)
		}
	}
	// alice is blocked now, even with her password; bob is not.
	if err := c.Login(alice, alicePass).Wait(); imapCode(err) != "NO [UNAVAILABLE]" {
		t.Fatalf("alice after 3 failures: %v", err)
	}
	login(t, e.addr, bob, bobPass, nil)
	// Three more failures from this IP block everyone from it.
	for range 3 {
		if err := c.Login("nobody@example.com", "x").Wait(); imapCode(err) != "NO [AUTHENTICATIONFAILED]" {
			t.Fatalf("got %v", err)
		}
	}
	c2 := dial(t, e.addr, nil)
	if err := c2.Login(bob, bobPass).Wait(); imapCode(err) != "NO [UNAVAILABLE]" {
		t.Fatalf("bob from a blocked IP: %v", err)
	}
	// The window passing lifts the blocks.
	e.srv.ipLim.window, e.srv.usLim.window = time.Nanosecond, time.Nanosecond
	if err := c2.Login(alice, alicePass).Wait(); err != nil {
		t.Fatalf("after the window: %v", err)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	cert, pool := testCert(t)
	e := newEnv(t, func(_ *env, o *Options) {
		o.AllowPlaintextAuth = false
		o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	})

	// Plain listener: LOGINDISABLED until STARTTLS.
	c := dial(t, e.addr, nil)
	if caps := c.Caps(); !caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapStartTLS) {
		t.Fatalf("caps before STARTTLS: %v", caps)
	}
	if err := c.Login(alice, alicePass).Wait(); imapCode(err) != "NO [PRIVACYREQUIRED]" {
		t.Fatalf("plaintext login: %v", err)
	}
	sc, err := imapclient.DialStartTLS(e.addr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	if err := sc.Login(alice, alicePass).Wait(); err != nil {
		t.Fatalf("login after STARTTLS: %v", err)
	}

	// Implicit TLS.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeTLS(ln)
	tc, err := imapclient.DialTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if err := tc.Login(bob, bobPass).Wait(); err != nil {
		t.Fatalf("login over TLS: %v", err)
	}
}

func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
