package daemon

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"os"

	"go.uber.org/zap"

	"github.com/mailferry/mailferry/proxy"
)

// proxyTLS loads the proxy's configured certificate, or the self-signed one
// kept in the data directory (made on first start, so that clients asked to
// trust it once keep trusting it).
func proxyTLS(certFile, keyFile, dataDir string, log *zap.Logger) (*tls.Config, error) {
	if certFile == "" {
		host, _ := os.Hostname()
		return proxy.SelfSignedTLS(dataDir, []string{host, "localhost", "127.0.0.1", "::1"}, log)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy certificate: %w", err)
	}
	sum := sha256.Sum256(cert.Certificate[0])
	log.Info("proxy certificate", zap.String("cert", certFile), zap.String("sha256", hex.EncodeToString(sum[:])))
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
