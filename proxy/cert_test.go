package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest"
)

func TestSelfSignedTLS(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	cfg, err := SelfSignedTLS(dir, []string{"mail.example.com", "127.0.0.1"}, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("mail.example.com"); err != nil {
		t.Error(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key file: %v %v", fi, err)
	}
	// The second start keeps the same certificate.
	cfg2, err := SelfSignedTLS(dir, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg2.Certificates[0].Certificate[0]) != string(cfg.Certificates[0].Certificate[0]) {
		t.Fatal("a new certificate on the second start")
	}

	// A client that trusts it reaches a proxy over implicit TLS.
	e := newEnv(t, func(_ *env, o *Options) { o.TLSConfig = cfg })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.srv.ServeTLS(ln)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	c, err := imapclient.DialTLS(ln.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, ServerName: "mail.example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(alice, alicePass).Wait(); err != nil {
		t.Fatal(err)
	}
}
