package o365

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"
)

// assertionLifetime is how long a client assertion is valid. Entra wants it
// short (5–10 minutes); each token request signs a new one.
const assertionLifetime = 10 * time.Minute

// assertionSigner makes client assertions (RFC 7523 JWTs, Entra's
// "certificate credentials") for one app. The few lines of JWS signing are
// written out here rather than taken from a JWT library: there is one fixed
// header, one fixed set of claims and two algorithms, all in crypto/rsa.
type assertionSigner struct {
	key          *rsa.PrivateKey
	alg          string // PS256 or RS256
	x5t, x5tS256 string
	clientID     string
	audience     string // the token endpoint
}

func newAssertionSigner(cert *x509.Certificate, key *rsa.PrivateKey, alg, clientID, tokenURL string) *assertionSigner {
	if alg == "" {
		alg = "PS256"
	}
	sha1Sum := sha1.Sum(cert.Raw)
	sha256Sum := sha256.Sum256(cert.Raw)
	return &assertionSigner{
		key:      key,
		alg:      alg,
		x5t:      base64.RawURLEncoding.EncodeToString(sha1Sum[:]),
		x5tS256:  base64.RawURLEncoding.EncodeToString(sha256Sum[:]),
		clientID: clientID,
		audience: tokenURL,
	}
}

// sign returns a new assertion valid from now for assertionLifetime.
func (a *assertionSigner) sign(now time.Time) (string, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", err
	}
	jti[6] = jti[6]&0x0f | 0x40 // a version 4 UUID, as Entra's examples show
	jti[8] = jti[8]&0x3f | 0x80
	h := hex.EncodeToString(jti)
	header := map[string]string{"alg": a.alg, "typ": "JWT", "x5t": a.x5t, "x5t#S256": a.x5tS256}
	claims := map[string]any{
		"aud": a.audience,
		"iss": a.clientID,
		"sub": a.clientID,
		"jti": h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:],
		"iat": now.Unix(),
		"nbf": now.Unix(),
		"exp": now.Add(assertionLifetime).Unix(),
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return "", err
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signingInput := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	digest := sha256.Sum256([]byte(signingInput))
	var sig []byte
	switch a.alg {
	case "PS256":
		// RFC 7518 §3.5: the salt is as long as the hash.
		sig, err = rsa.SignPSS(rand.Reader, a.key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	case "RS256":
		sig, err = rsa.SignPKCS1v15(rand.Reader, a.key, crypto.SHA256, digest[:])
	default:
		err = fmt.Errorf("unsupported algorithm %q", a.alg)
	}
	if err != nil {
		return "", err
	}
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// loadCertificate reads the app's certificate from certFile and its RSA key
// from keyFile, or from certFile when keyFile is "". The first certificate in
// the file is the app's (a chain may follow). The key must match it.
func loadCertificate(certFile, keyFile string) (*x509.Certificate, *rsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate: %w", err)
	}
	keyPEM, keySource := certPEM, certFile
	if keyFile != "" {
		if keyPEM, err = os.ReadFile(keyFile); err != nil {
			return nil, nil, fmt.Errorf("private key: %w", err)
		}
		keySource = keyFile
	}
	var cert *x509.Certificate
	for rest := certPEM; cert == nil; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			return nil, nil, fmt.Errorf("certificate file %s: no PEM CERTIFICATE block", certFile)
		}
		if block.Type == "CERTIFICATE" {
			if cert, err = x509.ParseCertificate(block.Bytes); err != nil {
				return nil, nil, fmt.Errorf("certificate file %s: %w", certFile, err)
			}
		}
	}
	key, err := parseRSAKey(keyPEM)
	if err != nil {
		// Never quote the file's content: it is a private key.
		return nil, nil, fmt.Errorf("private key in %s: %w", keySource, err)
	}
	pub, ok := cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, nil, fmt.Errorf("certificate file %s: the certificate's key is %T; Entra needs RSA", certFile, cert.PublicKey)
	}
	if !pub.Equal(&key.PublicKey) {
		return nil, nil, fmt.Errorf("private key in %s does not belong to the certificate in %s", keySource, certFile)
	}
	if time.Now().After(cert.NotAfter) {
		return nil, nil, fmt.Errorf("certificate file %s: the certificate expired on %s", certFile, cert.NotAfter.Format(time.DateOnly))
	}
	return cert, key, nil
}

// parseRSAKey finds the first private key block in data.
func parseRSAKey(data []byte) (*rsa.PrivateKey, error) {
	for {
		var block *pem.Block
		if block, data = pem.Decode(data); block == nil {
			return nil, errors.New("no PEM PRIVATE KEY block")
		}
		switch block.Type {
		case "RSA PRIVATE KEY":
			if _, ok := block.Headers["DEK-Info"]; ok {
				return nil, errors.New("the key is encrypted: store it without a passphrase (and readable by mailferry only)")
			}
			return x509.ParsePKCS1PrivateKey(block.Bytes)
		case "PRIVATE KEY":
			k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
			if err != nil {
				return nil, err
			}
			rk, ok := k.(*rsa.PrivateKey)
			if !ok {
				return nil, fmt.Errorf("the key is %T; Entra needs RSA", k)
			}
			return rk, nil
		case "ENCRYPTED PRIVATE KEY":
			return nil, errors.New("the key is encrypted: store it without a passphrase (and readable by mailferry only)")
		}
	}
}
