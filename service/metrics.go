package service

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vrift/vrift/rpc"
)

// metrics are the daemon's Prometheus families, in a registry of its own
// (no global state). Counters are incremented where the event happens;
// gauges read the service's counters and the incremental accounting, so a
// scrape costs a few map reads and never walks the store.
//
// Cardinality: labels are bounded. method takes the protocol's method
// names ("other" for anything else), code the JSON-RPC codes; uid labels
// (per-user bytes and quota refusals) exist only for users holding roots
// or refused, which are local accounts: at most the machine's users.
type metrics struct {
	reg *prometheus.Registry

	rpcRequests *prometheus.CounterVec
	rpcDuration *prometheus.HistogramVec

	ingestFiles     prometheus.Counter
	ingestReadBytes prometheus.Counter
	ingestNewBlobs  prometheus.Counter
	ingestNewBytes  prometheus.Counter
	ingestReused    prometheus.Counter
	ingestPrivate   prometheus.Counter

	gcRuns         *prometheus.CounterVec
	gcRemovedBlobs prometheus.Counter
	gcRemovedBytes prometheus.Counter
	gcDuration     prometheus.Histogram

	quotaRefusals *prometheus.CounterVec
	pins          *prometheus.CounterVec
}

var knownMethods = map[string]bool{
	rpc.MethodStatus: true, rpc.MethodIngest: true, rpc.MethodIngestBegin: true, rpc.MethodIngestPut: true,
	rpc.MethodIngestFlush: true, rpc.MethodLink: true, rpc.MethodGC: true, rpc.MethodVerify: true,
	rpc.MethodUsage: true, rpc.MethodMetrics: true, rpc.MethodRemotePull: true, rpc.MethodRemotePush: true,
}

func newMetrics(s *Service) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.rpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vrift_rpc_requests_total",
		Help: "RPC calls handled, by method and JSON-RPC result code (0: success)."}, []string{"method", "code"})
	m.rpcDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "vrift_rpc_request_duration_seconds",
		Help: "Time to handle an RPC call, by method.", Buckets: prometheus.ExponentialBuckets(0.0001, 4, 12)}, []string{"method"})
	m.ingestFiles = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_files_total",
		Help: "Files passed to ingest.put."})
	m.ingestReadBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_read_bytes_total",
		Help: "Bytes the daemon read from passed descriptors (logical sizes)."})
	m.ingestNewBlobs = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_new_blobs_total",
		Help: "Blobs ingests added to the store."})
	m.ingestNewBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_new_bytes_total",
		Help: "Bytes of the blobs ingests added to the store."})
	m.ingestReused = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_reused_blobs_total",
		Help: "Files whose blob was already in the store (deduplicated)."})
	m.ingestPrivate = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_ingest_private_files_total",
		Help: "Files left out of the shared store because they are not world-readable."})
	m.gcRuns = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vrift_gc_runs_total",
		Help: "Sweeps run: trigger=gc for vrift gc, trigger=limit for the store-wide limits (max_bytes, min_free)."}, []string{"trigger"})
	m.gcRemovedBlobs = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_gc_removed_blobs_total",
		Help: "Blobs sweeps removed."})
	m.gcRemovedBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "vrift_gc_removed_bytes_total",
		Help: "Disk bytes sweeps freed."})
	m.gcDuration = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "vrift_gc_duration_seconds",
		Help: "Time a sweep took.", Buckets: prometheus.ExponentialBuckets(0.01, 4, 10)})
	m.quotaRefusals = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vrift_quota_refusals_total",
		Help: "Ingests and pins refused because the user's quota would be exceeded, by uid; uid=\"store\" for the store-wide limits."}, []string{"uid"})
	m.pins = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "vrift_pins_total",
		Help: "Manifests pinned: kind=ingest ends an ingest; kind=link is vrift link or vrift mount (FUSE mounts are served by the CLI, which pins first)."}, []string{"kind"})
	for _, c := range []prometheus.Collector{m.rpcRequests, m.rpcDuration, m.ingestFiles, m.ingestReadBytes, m.ingestNewBlobs,
		m.ingestNewBytes, m.ingestReused, m.ingestPrivate, m.gcRuns, m.gcRemovedBlobs, m.gcRemovedBytes, m.gcDuration,
		m.quotaRefusals, m.pins} {
		f(c)
	}
	// Series that exist from the start, so that rate() sees their first
	// increment.
	for _, l := range []string{"gc", "limit"} {
		m.gcRuns.WithLabelValues(l)
	}
	for _, l := range []string{"ingest", "link"} {
		m.pins.WithLabelValues(l)
	}
	m.quotaRefusals.WithLabelValues("store")
	gauge := func(name, help string, v func() float64) {
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, v))
	}
	gauge("vrift_store_blobs", "Blobs in the shared store.", func() float64 { return float64(s.store.Totals().Counts().Blobs) })
	gauge("vrift_store_logical_bytes", "Logical bytes of the blobs in the shared store.", func() float64 { return float64(s.store.Totals().Counts().Bytes) })
	gauge("vrift_store_disk_bytes", "Disk bytes of the blobs in the shared store (blobs not yet flushed counted at their logical size).",
		func() float64 { return float64(s.store.Totals().Counts().DiskBytes) })
	gauge("vrift_store_referenced_bytes", "Bytes of the distinct blobs some pinned root references.",
		func() float64 { return float64(s.acct.Total().Referenced) })
	gauge("vrift_store_max_bytes", "The store's max_bytes (0: none).", func() float64 { return float64(s.cfg.MaxStoreBytes) })
	gauge("vrift_store_min_free_bytes", "The store's min_free (0: none).", func() float64 { return float64(s.cfg.MinFree) })
	// One statfs per scrape, as the min_free check makes (no walk).
	gauge("vrift_store_free_bytes", "Bytes available to the daemon on the store's filesystem.", func() float64 {
		var st unix.Statfs_t
		if err := unix.Statfs(s.store.Root(), &st); err != nil {
			return math.NaN()
		}
		return float64(st.Bavail) * float64(st.Bsize)
	})
	gauge("vrift_ingest_sessions_in_flight", "Ingest sessions open.", func() float64 {
		s.mu.Lock()
		defer s.mu.Unlock()
		return float64(len(s.sessions))
	})
	f(userCollector{s})
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// userCollector exports the accounting per uid.
type userCollector struct{ s *Service }

var (
	userReferenced = prometheus.NewDesc("vrift_user_referenced_bytes", "Bytes of the distinct blobs a user's roots reference (what the quota limits).", []string{"uid"}, nil)
	userExclusive  = prometheus.NewDesc("vrift_user_exclusive_bytes", "Bytes of the blobs only this user's roots reference.", []string{"uid"}, nil)
	userFair       = prometheus.NewDesc("vrift_user_fair_share_bytes", "Sum over a user's blobs of size / users referencing it.", []string{"uid"}, nil)
	userLimit      = prometheus.NewDesc("vrift_user_quota_limit_bytes", "A user's quota on referenced bytes (users with roots and a limit).", []string{"uid"}, nil)
)

func (u userCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- userReferenced
	ch <- userExclusive
	ch <- userFair
	ch <- userLimit
}

func (u userCollector) Collect(ch chan<- prometheus.Metric) {
	for uid, t := range u.s.acct.All() {
		l := strconv.FormatUint(uint64(uid), 10)
		ch <- prometheus.MustNewConstMetric(userReferenced, prometheus.GaugeValue, float64(t.Referenced), l)
		ch <- prometheus.MustNewConstMetric(userExclusive, prometheus.GaugeValue, float64(t.Exclusive), l)
		ch <- prometheus.MustNewConstMetric(userFair, prometheus.GaugeValue, float64(t.FairShare), l)
		if lim := u.s.limit(uid); lim > 0 {
			ch <- prometheus.MustNewConstMetric(userLimit, prometheus.GaugeValue, float64(lim), l)
		}
	}
}

// sweep counts a sweep that removed blobs freeing freed disk bytes;
// trigger is "gc" or "limit".
func (m *metrics) sweep(trigger string, blobs, freed int64, took time.Duration) {
	m.gcRuns.WithLabelValues(trigger).Inc()
	m.gcRemovedBlobs.Add(float64(blobs))
	m.gcRemovedBytes.Add(float64(freed))
	m.gcDuration.Observe(took.Seconds())
}

// observe records one RPC call.
func (m *metrics) observe(method string, err error, d time.Duration) {
	if !knownMethods[method] {
		method = "other"
	}
	code := rpc.CodeOf(err)
	if err != nil && code == 0 {
		code = rpc.CodeInternalError
	}
	m.rpcRequests.WithLabelValues(method, strconv.FormatInt(code, 10)).Inc()
	m.rpcDuration.WithLabelValues(method).Observe(d.Seconds())
}

// MetricsHandler serves /metrics (the Prometheus text format, or
// OpenMetrics when asked).
func (s *Service) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// metricsCall answers the metrics RPC with the families /metrics serves.
// Callers other than root and vrift get the per-user series of their own
// uid only: another user's usage is theirs to see.
func (s *Service) metricsCall(_ context.Context, c *rpc.Call) (any, error) {
	fams, err := s.metrics.reg.Gather()
	if err != nil {
		return nil, err
	}
	admin := s.admin(c.Peer)
	own := strconv.FormatUint(uint64(c.Peer.UID), 10)
	res := rpc.MetricsResult{Families: []any{}}
	for _, fam := range fams {
		if !admin {
			kept := fam.Metric[:0:0]
			for _, m := range fam.Metric {
				if uidLabel(m) == "" || uidLabel(m) == own {
					kept = append(kept, m)
				}
			}
			if len(kept) == 0 {
				continue
			}
			fam.Metric = kept
		}
		b, err := protojson.Marshal(fam)
		if err != nil {
			return nil, err
		}
		res.Families = append(res.Families, json.RawMessage(b))
	}
	return res, nil
}

func uidLabel(m *dto.Metric) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == "uid" {
			return l.GetValue()
		}
	}
	return ""
}
