package daemon

import (
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"html/template"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

//go:embed status.html
var statusPage string

var statusTmpl = template.Must(template.New("status").Funcs(template.FuncMap{
	"bytes": humanBytes,
	"ago": func(t *time.Time) string {
		if t == nil {
			return "–"
		}
		d := time.Since(*t).Round(time.Second)
		if d < 0 {
			return "in " + (-d).String()
		}
		return d.String() + " ago"
	},
	"stateClass": func(s State) string { return strings.ReplaceAll(string(s), " ", "-") },
}).Parse(statusPage))

// serveHTTP serves the status page, /api/status and /metrics.
func (d *Daemon) serveHTTP(ctx context.Context) (io.Closer, error) {
	ln, err := net.Listen("tcp", d.opts.HTTP)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(d.metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status(r.URL.Query().Get("mailbox"))
		reply(w, st, err)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		st, err := d.Status("")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := statusTmpl.Execute(w, st); err != nil {
			d.log.Warn("status page", zap.NamedError("err", err))
		}
	})
	srv := &http.Server{Handler: d.requireToken(mux), ReadHeaderTimeout: 10 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("status endpoint", zap.NamedError("err", err))
		}
	}()
	d.log.Info("status page", zap.String("url", "http://"+ln.Addr().String()+"/"))
	return srv, nil
}

// requireToken checks the bearer token (or basic-auth password) when one
// is configured.
func (d *Daemon) requireToken(h http.Handler) http.Handler {
	want := d.opts.HTTPToken.Reveal()
	if want == "" {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			_, got, _ = r.BasicAuth()
		}
		if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="mailferry"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
