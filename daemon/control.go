package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"go.uber.org/zap"
)

// The control endpoint: an HTTP/1.1 JSON API on a Unix socket in the data
// directory (Windows 10 and later have Unix sockets too), reachable only by
// whoever may open the data directory. Paths carry the protocol version.
const (
	controlSocket  = "control.sock"
	controlVersion = "v1"
)

func controlPath(dataDir string) string { return filepath.Join(dataDir, controlSocket) }

// serveControl listens on the data directory's socket. The store is open,
// so no other mailferry owns the directory: a socket file left there is
// stale.
func (d *Daemon) serveControl(ctx context.Context) (io.Closer, error) {
	path := controlPath(d.opts.Data)
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control endpoint: %w", err)
	}
	os.Chmod(path, 0o600)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+controlVersion+"/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status(r.URL.Query().Get("mailbox"))
		reply(w, st, err)
	})
	mux.HandleFunc("GET /"+controlVersion+"/report", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status(r.URL.Query().Get("mailbox"))
		if err != nil {
			reply(w, nil, err)
			return
		}
		rep, err := BuildReport(d.store, st)
		reply(w, rep, err)
	})
	mux.HandleFunc("POST /"+controlVersion+"/cutover", d.handleCutover)
	mux.HandleFunc("POST /"+controlVersion+"/reload", func(w http.ResponseWriter, r *http.Request) {
		reply(w, map[string]string{"result": "reloaded"}, d.Reload())
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("control endpoint", zap.NamedError("err", err))
		}
	}()
	return closerFunc(func() error {
		err := srv.Close()
		os.Remove(path)
		return err
	}), nil
}

// decodeJSON reads a request's JSON body, refusing unknown fields so that a
// newer client's request is not half understood.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

type closerFunc func() error

func (f closerFunc) Close() error { return f() }

// apiError is the JSON body of a failed control or status request.
type apiError struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		var ue *usageError
		code := http.StatusInternalServerError
		if errors.As(err, &ue) {
			code = http.StatusBadRequest
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(apiError{Error: err.Error()})
		return
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// usageError is a request the daemon refuses for what it asks, not for
// its own trouble.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// ErrNotRunning says no daemon answers on the data directory's socket.
var ErrNotRunning = errors.New("no mailferry daemon runs on this data directory")

// controlClient talks to a running daemon.
type controlClient struct {
	hc *http.Client
}

// dialControl returns a client for the daemon of dataDir, or ErrNotRunning.
func dialControl(dataDir string) (*controlClient, error) {
	path := controlPath(dataDir)
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, ErrNotRunning
	}
	c.Close()
	return &controlClient{hc: &http.Client{
		Timeout: 10 * time.Minute, // a cutover waits for the final sync
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}},
	}}, nil
}

// call sends a request to the daemon and decodes its JSON answer into out.
func (c *controlClient) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mailferry/"+controlVersion+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control endpoint: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var ae apiError
		json.NewDecoder(resp.Body).Decode(&ae)
		if resp.StatusCode == http.StatusBadRequest {
			return &ExitError{Code: ExitUsage, Err: errors.New(ae.Error)}
		}
		return fmt.Errorf("daemon: %s", ae.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
