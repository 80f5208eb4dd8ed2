package server_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/exportbridge/exportbridge/server"
	"github.com/exportbridge/exportbridge/test/bridgetest"
)

func TestHealthTransitions(t *testing.T) {
	const every = 30 * time.Second
	clk := bridgetest.NewClock(time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC))
	h := server.NewHealth(every, clk.Now)

	steps := []struct {
		name       string
		do         func()
		wantReady  bool
		wantReason string
		wantDetail string // substring
		wantLast   bool   // last_successful_poll present
	}{
		{"store not yet open", func() {}, false, server.ReasonStoreClosed, "", false},
		{"store open, no poll yet", func() { h.StoreOpen(true) }, false, server.ReasonStarting, "", false},
		{"failed first poll while starting", func() {
			clk.Advance(every)
			h.PollFailed(clk.Now(), "timeout", "context deadline exceeded", false)
		}, false, server.ReasonStarting, "timeout: context deadline exceeded", false},
		{"still starting at exactly 3 intervals", func() { clk.Advance(2 * every) }, false, server.ReasonStarting, "", false},
		{"no poll within 3 intervals of start", func() { clk.Advance(time.Second) }, false, server.ReasonNoRecentPoll, "no successful poll since start", false},
		{"first successful poll", func() { h.PollOK(clk.Now()) }, true, server.ReasonReady, "", true},
		{"transient failure inside the window stays ready", func() {
			clk.Advance(every)
			h.PollFailed(clk.Now(), "http_503", "Service Unavailable", false)
		}, true, server.ReasonReady, "", true},
		{"exactly 3 intervals after the last success", func() { clk.Advance(2 * every) }, true, server.ReasonReady, "", true},
		{"past 3 intervals after the last success", func() { clk.Advance(time.Second) }, false, server.ReasonNoRecentPoll, "http_503: Service Unavailable", true},
		{"recovered", func() { h.PollOK(clk.Now()) }, true, server.ReasonReady, "", true},
		{"API answers 401", func() {
			clk.Advance(every)
			h.PollFailed(clk.Now(), "http_401", "Unauthenticated.", true)
		}, false, server.ReasonAPIUnauthorized, "Unauthenticated.", true},
		{"later non-auth failure keeps api_unauthorized", func() {
			h.PollFailed(clk.Now(), "timeout", "deadline", false)
		}, false, server.ReasonAPIUnauthorized, "", true},
		{"token rotated, poll ok", func() { h.PollOK(clk.Now()) }, true, server.ReasonReady, "", true},
		{"store commit fails", func() { h.StoreError(errors.New("commit: no space left on device")) }, false, server.ReasonStoreError, "no space left on device", true},
		{"store error outranks auth failure", func() { h.PollFailed(clk.Now(), "http_403", "Forbidden", true) }, false, server.ReasonStoreError, "", true},
		{"poll ok clears store error and auth", func() { h.PollOK(clk.Now()) }, true, server.ReasonReady, "", true},
		{"StoreError(nil) clears", func() { h.StoreError(errors.New("read-only file system")); h.StoreError(nil) }, true, server.ReasonReady, "", true},
		{"store closed outranks everything", func() { h.StoreError(errors.New("x")); h.StoreOpen(false) }, false, server.ReasonStoreClosed, "", true},
	}
	for _, s := range steps {
		s.do()
		ready, r := h.Ready()
		if ready != s.wantReady || r.Reason != s.wantReason {
			t.Fatalf("%s: Ready() = %v, %q (%s); want %v, %q", s.name, ready, r.Reason, r.Detail, s.wantReady, s.wantReason)
		}
		if !strings.Contains(r.Detail, s.wantDetail) {
			t.Fatalf("%s: detail %q does not contain %q", s.name, r.Detail, s.wantDetail)
		}
		if (r.LastPoll != nil) != s.wantLast {
			t.Fatalf("%s: last_successful_poll = %v, want present=%v", s.name, r.LastPoll, s.wantLast)
		}
	}
}

func TestHealthPollOKKeepsLatest(t *testing.T) {
	clk := bridgetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	h := server.NewHealth(time.Minute, clk.Now)
	h.StoreOpen(true)
	late := clk.Now()
	h.PollOK(late)
	h.PollOK(late.Add(-time.Hour)) // an out-of-order report must not move the time back
	_, r := h.Ready()
	if r.LastPoll == nil || !r.LastPoll.Equal(late) {
		t.Fatalf("last_successful_poll = %v, want %v", r.LastPoll, late)
	}
}

func TestHealthDefaults(t *testing.T) {
	// A non-positive interval falls back to 30s and a nil clock to time.Now: a fresh
	// Health with an open store is "starting", not "no_recent_poll".
	for _, iv := range []time.Duration{0, -time.Second} {
		h := server.NewHealth(iv, nil)
		h.StoreOpen(true)
		if ok, r := h.Ready(); ok || r.Reason != server.ReasonStarting {
			t.Fatalf("interval %v: Ready() = %v, %q; want false, starting", iv, ok, r.Reason)
		}
		h.PollOK(time.Now())
		if ok, r := h.Ready(); !ok {
			t.Fatalf("interval %v: after PollOK Ready() = false, %q", iv, r.Reason)
		}
	}
}

func TestHealthConcurrent(t *testing.T) {
	h := server.NewHealth(time.Second, nil)
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				switch (i + j) % 5 {
				case 0:
					h.PollOK(time.Now())
				case 1:
					h.PollFailed(time.Now(), "k", "m", j%2 == 0)
				case 2:
					h.StoreOpen(j%3 != 0)
				case 3:
					h.StoreError(nil)
				default:
					h.Ready()
				}
			}
		}()
	}
	wg.Wait()
	h.StoreOpen(true)
	h.PollOK(time.Now())
	if ok, r := h.Ready(); !ok {
		t.Fatalf("after concurrent use: not ready: %q", r.Reason)
	}
}
