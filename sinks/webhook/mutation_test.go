package webhook_test

// Tests that kill mutants scripts/mutation.sh found alive in ./sinks/webhook (issue 17).

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// TestConfigLimitsAreInclusive: a webhook block's timeout must be positive, its
// concurrency 1 to 64 (both ends allowed), and a CA file, when given, must be readable.
func TestConfigLimitsAreInclusive(t *testing.T) {
	missingCA := filepath.Join(t.TempDir(), "missing.pem")
	tests := []struct {
		name    string
		mod     func(c *webhook.Config)
		wantKey string // "" for valid
	}{
		{"defaults", func(*webhook.Config) {}, ""},
		{"timeout 0", func(c *webhook.Config) { c.Timeout = 0 }, "timeout"},
		{"timeout 1ns", func(c *webhook.Config) { c.Timeout = time.Nanosecond }, ""},
		{"concurrency 1", func(c *webhook.Config) { c.Concurrency = 1 }, ""},
		{"concurrency 64", func(c *webhook.Config) { c.Concurrency = 64 }, ""},
		{"concurrency 0", func(c *webhook.Config) { c.Concurrency = 0 }, "concurrency"},
		{"concurrency 65", func(c *webhook.Config) { c.Concurrency = 65 }, "concurrency"},
		{"missing CA file", func(c *webhook.Config) { c.CA = missingCA }, "ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := webhook.DefaultConfig()
			c.URL = "https://example.com/hook"
			tt.mod(&c)
			err := c.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Errorf("Validate = %v, want valid", err)
			case tt.wantKey != "" && (err == nil || !strings.Contains(err.Error(), tt.wantKey)):
				t.Errorf("Validate = %v, want an error naming %q", err, tt.wantKey)
			}
		})
	}
}

// TestHighestPortAccepted: a webhook URL on port 65535 is valid.
func TestHighestPortAccepted(t *testing.T) {
	s, err := webhook.NewSink(webhook.Options{Name: "webhook-1", URL: "https://example.com:65535/hook"})
	if err != nil {
		t.Fatalf("NewSink with port 65535: %v", err)
	}
	_ = s.Close()
}

// TestSecretsAReceiverEchoesAreRedacted: a receiver that refuses a delivery and quotes
// what it got (the query string decoded, the user name and password of the URL's
// userinfo, sent as basic auth) does not bring them into the error, which goes to logs,
// `dlq list` and the status page.
func TestSecretsAReceiverEchoesAreRedacted(t *testing.T) {
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, err := url.QueryUnescape(r.URL.RawQuery)
		if err != nil {
			t.Errorf("receiver cannot decode the query %q: %v", r.URL.RawQuery, err)
		}
		user, pass, _ := r.BasicAuth()
		http.Error(w, "refused: query "+q+", user "+user+", password "+pass, http.StatusForbidden)
	}))
	t.Cleanup(echo.Close)
	tests := []struct {
		name    string
		url     string
		secrets []string
	}{
		{"escaped query", echo.URL + "/hook?token=s3cr%2Fet%2Bkey", []string{"s3cr"}},
		{"password", strings.Replace(echo.URL, "://", "://deliveries:pa55w0rd@", 1) + "/hook", []string{"pa55w0rd"}},
		{"password that starts with the user name", strings.Replace(echo.URL, "://", "://deliveries:deliveries-7f3k9@", 1) + "/hook", []string{"7f3k9"}},
		{"user name of 4 bytes", strings.Replace(echo.URL, "://", "://k3y9:pw-9@", 1) + "/hook", []string{"k3y9"}},
		{"user name as the only credential", strings.Replace(echo.URL, "://", "://tok_live_4f9a2c@", 1) + "/hook", []string{"tok_live_4f9a2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustNew(t, webhook.Options{Name: "webhook-3", URL: tt.url})
			err := s.Deliver(context.Background(), testEvent(t, 21))
			if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "refused: query") {
				t.Fatalf("Deliver = %v, want the receiver's 403 with its body", err)
			}
			for _, sec := range tt.secrets {
				if strings.Contains(err.Error(), sec) {
					t.Errorf("error leaks %q: %q", sec, err.Error())
				}
			}
		})
	}
}

// TestConcurrencyAboveTheDefaultIsUsed: a sink configured for 8 concurrent deliveries
// has 8 requests in flight at once (the transport's default would be 4).
func TestConcurrencyAboveTheDefaultIsUsed(t *testing.T) {
	const conc = 8
	var arrived atomic.Int64
	all := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if arrived.Add(1) == conc {
			close(all)
		}
		select {
		case <-all:
			w.WriteHeader(http.StatusNoContent)
		case <-time.After(5 * time.Second):
			http.Error(w, "the other deliveries did not arrive meanwhile", http.StatusServiceUnavailable)
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	s := mustNew(t, webhook.Options{URL: srv.URL, Concurrency: conc})
	var wg sync.WaitGroup
	errs := make(chan error, conc)
	for i := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.Deliver(context.Background(), testEvent(t, 30+i))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Deliver = %v, want all %d in flight together", err, conc)
		}
	}
}

// TestCAFileIsAddedToTheSystemRoots: the ca setting is an extra CA (SPEC: WEBHOOK_CA,
// "extra CA file"), so an endpoint the system trusts still works beside it. Go reads the
// system roots once per process: the delivery runs in a child process whose
// SSL_CERT_FILE is the test server's certificate, with config/testdata's unrelated CA as
// the sink's ca.
func TestCAFileIsAddedToTheSystemRoots(t *testing.T) {
	if u := os.Getenv("WEBHOOK_TEST_SYSTEM_TRUSTED_URL"); u != "" {
		s, err := webhook.NewSink(webhook.Options{URL: u + "/hook", CAFile: filepath.Join("..", "..", "config", "testdata", "ca.pem")})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3)
		}
		if err := s.Deliver(context.Background(), testEvent(t, 40)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		os.Exit(0)
	}
	if runtime.GOOS == "darwin" || runtime.GOOS == "ios" || runtime.GOOS == "windows" {
		t.Skipf("SSL_CERT_FILE does not set the system roots on %s", runtime.GOOS)
	}
	srv := quietTLSServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	cmd := exec.Command(os.Args[0], "-test.run=^TestCAFileIsAddedToTheSystemRoots$")
	cmd.Env = append(os.Environ(), "WEBHOOK_TEST_SYSTEM_TRUSTED_URL="+srv.URL,
		"SSL_CERT_FILE="+writeCA(t, srv), "SSL_CERT_DIR="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("delivery to a system-trusted endpoint with a ca file set: %v\n%s", err, out)
	}
}
