package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/config"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/simapi"
	"github.com/exportbridge/exportbridge/sinks/registry"
	"github.com/exportbridge/exportbridge/sinks/webhook"
)

// cmdDemo runs the whole pipeline with no account: an embedded simulated Plugchoice API
// whose exports move through their statuses, an embedded NATS server with JetStream, a
// local webhook receiver that verifies signatures, and the stdout sink.
func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--duration 0] [--exports 40] [--poll 2s]", stderr)
	duration := fs.Duration("duration", 0, "stop by itself after this long (0: until Ctrl-C)")
	exports := fs.Int("exports", 40, "exports the simulated account starts with")
	poll := fs.Duration("poll", 2*time.Second, "poll interval")
	step := fs.Duration("step", time.Second, "how often the simulated exports move on")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	if *duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	tmp, err := os.MkdirTemp("", "exportbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// 1. The simulated Plugchoice API.
	token := randomString(24)
	sim := simapi.New(simapi.Options{Token: token, Seed: time.Now().UnixNano()})
	// A realistic account: most exports finished long ago, some failed, some in flight.
	sim.AddN(*exports*6/10, "ready")
	sim.AddN(*exports/10, "failed")
	sim.AddN(*exports-*exports*6/10-*exports/10, "pending")
	apiURL, stopAPI, err := serveLoopback(http.StripPrefix("/api/v3", sim))
	if err != nil {
		return fmt.Errorf("demo: simulated API: %w", err)
	}
	defer stopAPI()
	simCtx, stopSim := context.WithCancel(ctx)
	defer stopSim()
	go sim.Run(simCtx, *step)

	// 2. NATS with JetStream, a stream that captures the bridge's subjects, and a
	// subscriber that prints what arrives.
	ns, err := natsembed.Start(natsembed.Options{JetStream: true, StoreDir: tmp + "/nats"})
	if err != nil {
		return fmt.Errorf("demo: NATS: %w", err)
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	nc, err := natsgo.Connect(ns.ClientURL(), natsgo.Name("exportbridge-demo-subscriber"))
	if err != nil {
		return fmt.Errorf("demo: NATS subscriber: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EXPORTS", Subjects: []string{"plugchoice.exports.>"}, Duplicates: 10 * time.Minute}); err != nil {
		return fmt.Errorf("demo: create stream EXPORTS: %w", err)
	}
	if _, err := nc.Subscribe("plugchoice.exports.>", func(m *natsgo.Msg) {
		fmt.Fprintf(stderr, "nats      %s (Nats-Msg-Id %s)\n", m.Subject, m.Header.Get("Nats-Msg-Id"))
	}); err != nil {
		return err
	}

	// 3. A webhook receiver that verifies every signature.
	key := make([]byte, 24)
	rand.Read(key)
	secret := "whsec_" + base64.StdEncoding.EncodeToString(key)
	recv := webhook.NewReceiver([][]byte{key}, func(id string, ce *event.CloudEvent, body []byte) {
		fmt.Fprintf(stderr, "webhook   verified %s %s\n", ce.Type, ce.Subject)
	})
	hookURL, stopHook, err := serveLoopback(recv)
	if err != nil {
		return fmt.Errorf("demo: webhook receiver: %w", err)
	}
	defer stopHook()

	adminAddr, err := freeLoopbackAddr()
	if err != nil {
		return fmt.Errorf("demo: admin address: %w", err)
	}
	env := map[string]string{
		"EXPORTBRIDGE_API_URL":            apiURL + "/api/v3",
		"EXPORTBRIDGE_API_TOKEN":          token,
		"EXPORTBRIDGE_STATE_DIR":          tmp + "/state",
		"EXPORTBRIDGE_POLL_INTERVAL":      poll.String(),
		"EXPORTBRIDGE_FULL_SYNC_INTERVAL": (10 * *poll).String(),
		"EXPORTBRIDGE_STDOUT":             "true",
		"EXPORTBRIDGE_NATS_URL":           ns.ClientURL(),
		"EXPORTBRIDGE_NATS_JETSTREAM":     "true",
		"EXPORTBRIDGE_WEBHOOK_URLS":       hookURL + "/hooks/exports",
		"EXPORTBRIDGE_WEBHOOK_SECRET":     secret,
		"EXPORTBRIDGE_LISTEN_ADDR":        "127.0.0.1:0",
		"EXPORTBRIDGE_ADMIN_ADDR":         adminAddr,
		"EXPORTBRIDGE_LOG_FORMAT":         "text",
		"EXPORTBRIDGE_LOG_LEVEL":          "info",
	}
	cfg, err := config.Load(env)
	if err != nil {
		return fmt.Errorf("demo settings: %w", err)
	}
	specs, err := registry.Load(cfg.Sinks)
	if err != nil {
		return fmt.Errorf("demo sinks: %w", err)
	}
	log := newLogger(cfg, stderr, specs...)
	fmt.Fprintf(stderr, "demo: simulated Plugchoice API at %s/api/v3 with %d exports; NATS at %s (stream EXPORTS); webhook receiver at %s\n",
		apiURL, *exports, ns.ClientURL(), hookURL)
	fmt.Fprintf(stderr, "demo: status page at http://%s/ (open it in a browser)\n", adminAddr)
	fmt.Fprintln(stderr, "demo: the first poll takes the baseline (no events); changes follow as the simulated exports move on. Ctrl-C stops.")
	err = runBridge(ctx, cfg, specs, stdout, log)
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return err
}

// serveLoopback serves h on a free loopback port until stop is called.
func serveLoopback(h http.Handler) (url string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// freeLoopbackAddr returns a loopback address with a port free at the time of the call.
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)[:n]
}
