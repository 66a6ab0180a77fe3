package daemon

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailferry/mailferry/imapconn"
	mfsync "github.com/mailferry/mailferry/sync"
)

// Metrics are the daemon's Prometheus metrics, on a registry of their own
// (client_golang: the reference implementation of the exposition format).
// They also serve as the engine's Progress.
type Metrics struct {
	Registry     *prometheus.Registry
	copied       prometheus.Counter
	bytes        prometheus.Counter
	skipped      *prometheus.CounterVec
	errors       *prometheus.CounterVec
	passDuration prometheus.Histogram
	backoffs     prometheus.Counter
	// Proxy metrics, updated by the proxy's hooks.
	ProxyConnections prometheus.Gauge
	ProxyLogins      *prometheus.CounterVec
}

func newMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		copied:   prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_messages_copied_total", Help: "Messages copied to the target."}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_bytes_copied_total", Help: "Message bytes copied to the target."}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_messages_skipped_total",
			Help: "Messages skipped, by reason."}, []string{"reason"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_sync_errors_total",
			Help: "Mailbox passes that failed, by kind (temporary, permanent, throttled)."}, []string{"kind"}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailferry_sync_pass_duration_seconds",
			Help: "Duration of mailbox sync passes.", Buckets: prometheus.ExponentialBuckets(0.05, 3, 10)}),
		backoffs: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailferry_throttle_backoffs_total",
			Help: "Times a mailbox paused because the target throttled it."}),
		ProxyConnections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailferry_proxy_connections", Help: "Open client connections to the proxy."}),
		ProxyLogins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailferry_proxy_logins_total",
			Help: "Proxy logins, by result and route."}, []string{"result", "route"}),
	}
	m.Registry.MustRegister(m.copied, m.bytes, m.skipped, m.errors, m.passDuration, m.backoffs,
		m.ProxyConnections, m.ProxyLogins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// MailboxPlanned implements mfsync.Progress.
func (m *Metrics) MailboxPlanned(string, int, int64) {}

// MessageCopied implements mfsync.Progress.
func (m *Metrics) MessageCopied(_ string, bytes int64) {
	m.copied.Inc()
	m.bytes.Add(float64(bytes))
}

// MailboxDone implements mfsync.Progress.
func (m *Metrics) MailboxDone(r *mfsync.MailboxResult) {
	m.passDuration.Observe(r.Duration.Seconds())
	for reason, n := range r.SkippedBy() {
		short, _, _ := strings.Cut(reason, ":")
		m.skipped.WithLabelValues(short).Add(float64(n))
	}
	if r.Err != nil {
		kind := "permanent"
		if _, ok := imapconn.ThrottleDelay(r.Err); ok {
			kind = "throttled"
		} else if imapconn.IsTemporary(r.Err) {
			kind = "temporary"
		}
		m.errors.WithLabelValues(kind).Inc()
	}
}

func (m *Metrics) throttled() { m.backoffs.Inc() }

func (m *Metrics) bytesCopied() float64 {
	var out dto.Metric
	if err := m.bytes.Write(&out); err != nil || out.Counter == nil {
		return 0
	}
	return out.Counter.GetValue()
}
