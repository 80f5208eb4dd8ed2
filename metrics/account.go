package metrics

import "github.com/prometheus/client_golang/prometheus"

// DefaultAccount labels the poll metrics of the one account of API_TOKEN.
const DefaultAccount = "default"

// accountVecs are the poll and API metrics, each with an account label: one account's
// 429s, budget and cadence are seen apart from another's.
type accountVecs struct {
	polls              *prometheus.CounterVec
	apiRequests        *prometheus.CounterVec
	apiRequestDuration *prometheus.HistogramVec
	apiRateRemaining   *prometheus.GaugeVec
	exportsTracked     *prometheus.GaugeVec
	lastPollSuccess    *prometheus.GaugeVec
	pollDuration       *prometheus.HistogramVec
	retryAfterUntil    *prometheus.GaugeVec
}

func newAccountVecs() *accountVecs {
	a := []string{"account"}
	return &accountVecs{
		polls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exportbridge_polls_total", Help: "Poll cycles by account and outcome (ok, error).",
		}, []string{"account", "outcome"}),
		apiRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "exportbridge_api_requests_total", Help: "Plugchoice API requests by account and status code class (2xx, 4xx, 429, 5xx, error).",
		}, []string{"account", "code"}),
		apiRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exportbridge_api_request_duration_seconds", Help: "Duration of one Plugchoice API request, by account.",
			Buckets: prometheus.DefBuckets,
		}, a),
		apiRateRemaining: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_api_ratelimit_remaining", Help: "Last X-RateLimit-Remaining seen from the API, by account.",
		}, a),
		exportsTracked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_exports_tracked", Help: "Exports in the snapshot, by account.",
		}, a),
		lastPollSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_last_successful_poll_timestamp_seconds", Help: "Unix time of the last successful poll, by account.",
		}, a),
		pollDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "exportbridge_poll_duration_seconds", Help: "Duration of one poll cycle, by account.",
			Buckets: prometheus.DefBuckets,
		}, a),
		retryAfterUntil: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "exportbridge_api_retry_after_until_timestamp_seconds",
			Help: "Unix time until which the API's last Retry-After (429 or 503) holds every request of the account's token; in the past when requests may go.",
		}, a),
	}
}

// setAccount points the account-labelled fields at account's children.
func (m *Metrics) setAccount(account string) {
	a, l := m.acct, prometheus.Labels{"account": account}
	m.Polls = a.polls.MustCurryWith(l)
	m.APIRequests = a.apiRequests.MustCurryWith(l)
	m.APIRequestDuration = a.apiRequestDuration.WithLabelValues(account).(prometheus.Histogram)
	m.APIRateRemaining = a.apiRateRemaining.WithLabelValues(account)
	m.ExportsTracked = a.exportsTracked.WithLabelValues(account)
	m.LastPollSuccess = a.lastPollSuccess.WithLabelValues(account)
	m.PollDuration = a.pollDuration.WithLabelValues(account).(prometheus.Histogram)
	m.APIRetryAfterUntil = a.retryAfterUntil.WithLabelValues(account)
}

// ForAccount returns metrics whose poll and API metrics carry account="<account>"; the
// others (deliveries, depths, events) are shared with m. Give each account's client and
// poller its own. A nil m gives nil.
func (m *Metrics) ForAccount(account string) *Metrics {
	if m == nil {
		return nil
	}
	c := *m
	c.setAccount(account)
	return &c
}

// DropAccount removes account's series (New makes those of DefaultAccount: a bridge
// polling named accounts only drops them, so that no phantom account is exported).
func (m *Metrics) DropAccount(account string) {
	if m == nil {
		return
	}
	a, l := m.acct, prometheus.Labels{"account": account}
	a.polls.DeletePartialMatch(l)
	a.apiRequests.DeletePartialMatch(l)
	a.apiRequestDuration.DeletePartialMatch(l)
	a.apiRateRemaining.DeletePartialMatch(l)
	a.exportsTracked.DeletePartialMatch(l)
	a.lastPollSuccess.DeletePartialMatch(l)
	a.pollDuration.DeletePartialMatch(l)
	a.retryAfterUntil.DeletePartialMatch(l)
}
