package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/goccy/go-yaml"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/exportbridge/exportbridge/delivery"
	"github.com/exportbridge/exportbridge/event"
	"github.com/exportbridge/exportbridge/natsembed"
	"github.com/exportbridge/exportbridge/plugchoice"
	"github.com/exportbridge/exportbridge/sinks"
	natssink "github.com/exportbridge/exportbridge/sinks/nats"
	"github.com/exportbridge/exportbridge/sinks/stdout"
	"github.com/exportbridge/exportbridge/sinks/webhook"
	"github.com/exportbridge/exportbridge/store"
	"github.com/exportbridge/exportbridge/template"
)

// teamsRecipe is the Teams recipe the webhook-teams sink renders per event (its body
// template); benchbridge runs from the repository root.
const teamsRecipe = "deploy/templates/teams.yaml"

// teamsPayload compiles the body of the Teams recipe, as the webhook sink of that
// recipe does.
func teamsPayload() (*template.Payload, error) {
	raw, err := os.ReadFile(teamsRecipe)
	if err != nil {
		return nil, fmt.Errorf("webhook-teams: %w (run benchbridge from the repository root)", err)
	}
	var r struct {
		Sinks []struct {
			Webhook struct {
				Body any `yaml:"body"`
			} `yaml:"webhook"`
		} `yaml:"sinks"`
	}
	if err := yaml.Unmarshal(raw, &r); err != nil || len(r.Sinks) != 1 || r.Sinks[0].Webhook.Body == nil {
		return nil, fmt.Errorf("webhook-teams: %s holds no webhook body (%v)", teamsRecipe, err)
	}
	return template.NewPayload("webhook-teams", template.PayloadConfig{Body: r.Sinks[0].Webhook.Body})
}

// target is one sink under test plus its plain-client ceiling.
type target struct {
	sink        sinks.Sink
	concurrency int
	// ceiling sends the same bodies with a plain client, the same concurrency.
	ceiling func(ctx context.Context, recs []store.Record) error
	// ceilingRaw, when set, is the bare client without per-message confirmation.
	ceilingRaw func(ctx context.Context, recs []store.Record) error
	close      func()
}

// benchThroughput: a burst of n transitions detected in one cycle, delivered to each
// sink by the real dispatcher, next to a plain-client loop over the same bodies. The
// webhook receivers answer after delay: 0 is the loopback worst case, where the sink's
// CPU (and the receiver's, in the same process) bounds the rate; a few milliseconds is an
// endpoint across a network, where the round trip does.
func benchThroughput(ctx context.Context, w io.Writer, n, runs int, names []string, delay time.Duration) error {
	fmt.Fprintf(w, "# throughput: burst of %d transitions in one cycle, %d runs per sink (events/s)\n", n, runs)
	if delay > 0 {
		fmt.Fprintf(w, "# webhook receivers answer after %s (-receiver-delay)\n", delay)
	}
	fmt.Fprintf(w, "# the sinks take turns within each run (run 1 of every sink, then run 2, ...)\n")
	fmt.Fprintf(w, "%-13s %12s %12s %12s %8s %14s %12s\n", "sink", "sink-med", "ceiling-med", "raw-med", "ratio", "cycle-med", "cycle-reqs")
	type series struct {
		sinkR, ceilR, rawR []float64
		sinkCPU, ceilCPU   []float64
		cycles             []time.Duration
		reqs               []int
	}
	all := make(map[string]*series, len(names))
	for _, name := range names {
		all[name] = &series{}
	}
	for r := 0; r < runs; r++ {
		for _, name := range names {
			tg, err := newTarget(ctx, name, delay)
			if err != nil {
				return fmt.Errorf("sink %s: %w", name, err)
			}
			res, err := burst(ctx, n, tg)
			tg.close()
			if err != nil {
				return fmt.Errorf("sink %s run %d: %w", name, r+1, err)
			}
			sr := all[name]
			sr.sinkR, sr.ceilR, sr.cycles, sr.reqs = append(sr.sinkR, res.sink), append(sr.ceilR, res.ceiling), append(sr.cycles, res.cycle), append(sr.reqs, res.requests)
			if res.raw > 0 {
				sr.rawR = append(sr.rawR, res.raw)
			}
			sr.sinkCPU, sr.ceilCPU = append(sr.sinkCPU, res.sinkCPU), append(sr.ceilCPU, res.ceilCPU)
		}
	}
	for _, name := range names {
		sr := all[name]
		raw := "-"
		if len(sr.rawR) > 0 {
			raw = fmt.Sprintf("%.0f", median(sr.rawR))
		}
		fmt.Fprintf(w, "%-13s %12.0f %12.0f %12s %8.2f %14s %12.0f\n", name, median(sr.sinkR), median(sr.ceilR), raw,
			median(sr.sinkR)/median(sr.ceilR), ms(medianDur(sr.cycles)), median(sr.reqs))
		fmt.Fprintf(w, "  runs: sink %v ceiling %v raw %v\n", round(sr.sinkR), round(sr.ceilR), round(sr.rawR))
		fmt.Fprintf(w, "  cpu µs/event (process, all threads): sink %.1f ceiling %.1f, ceiling/sink %.2f; runs: sink %v ceiling %v\n",
			median(sr.sinkCPU), median(sr.ceilCPU), median(sr.ceilCPU)/median(sr.sinkCPU), round(sr.sinkCPU), round(sr.ceilCPU))
	}
	if t, u := all["webhook-teams"], all["webhook"]; t != nil && u != nil {
		fmt.Fprintf(w, "webhook-teams / webhook (templated / CloudEvent, sink medians): events/s %.2f, cpu per event %.2f\n",
			median(t.sinkR)/median(u.sinkR), median(u.sinkCPU)/median(t.sinkCPU))
	}
	return nil
}

// processCPU is the CPU time of this process so far (user + system, all threads).
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func round(fs []float64) []int {
	out := make([]int, len(fs))
	for i, f := range fs {
		out[i] = int(f + 0.5)
	}
	return out
}

type burstResult struct {
	sink, ceiling, raw float64
	// sinkCPU and ceilCPU are the process's CPU time per event (µs) while the dispatcher
	// and the ceiling loop ran: less sensitive than events/s to other work on the machine.
	sinkCPU, ceilCPU float64
	cycle            time.Duration
	requests         int
}

func burst(ctx context.Context, n int, tg *target) (burstResult, error) {
	var res burstResult
	e := newEnv(-1)
	defer e.close()
	uuids := e.sim.AddN(n, plugchoice.StatusPending)
	c, err := e.client(nil)
	if err != nil {
		return res, err
	}
	name := tg.sink.Name()
	var d *delivery.Dispatcher
	p, st, cleanup, err := newPoller(c, time.Hour, func(event.Event) []string { return []string{name} }, func() {})
	if err != nil {
		return res, err
	}
	defer cleanup()
	if _, err := p.Cycle(ctx); err != nil {
		return res, fmt.Errorf("baseline cycle: %w", err)
	}
	for _, u := range uuids {
		e.sim.SetStatus(u, plugchoice.StatusReady)
	}
	rep, err := p.Cycle(ctx)
	if err != nil {
		return res, fmt.Errorf("burst cycle: %w", err)
	}
	if rep.Events != n {
		return res, fmt.Errorf("burst cycle produced %d events, want %d", rep.Events, n)
	}
	res.cycle, res.requests = rep.Duration, rep.Requests
	recs, err := st.Pending(name, 0, n)
	if err != nil || len(recs) != n {
		return res, fmt.Errorf("outbox holds %d events (%v), want %d", len(recs), err, n)
	}

	// Ceiling first, on the same bodies.
	t0, c0 := time.Now(), processCPU()
	if err := tg.ceiling(ctx, recs); err != nil {
		return res, fmt.Errorf("ceiling: %w", err)
	}
	res.ceiling = float64(n) / time.Since(t0).Seconds()
	res.ceilCPU = float64((processCPU() - c0).Microseconds()) / float64(n)
	if tg.ceilingRaw != nil {
		t0 = time.Now()
		if err := tg.ceilingRaw(ctx, recs); err != nil {
			return res, fmt.Errorf("raw ceiling: %w", err)
		}
		res.raw = float64(n) / time.Since(t0).Seconds()
	}

	d = delivery.NewDispatcher(st, delivery.DispatcherOptions{Sink: tg.sink, Concurrency: tg.concurrency, Logger: quietLogger()})
	rctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	t0, c0 = time.Now(), processCPU()
	go func() { errc <- d.Run(rctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 2*time.Minute)
	werr := d.WaitIdle(wctx)
	el := time.Since(t0)
	res.sinkCPU = float64((processCPU() - c0).Microseconds()) / float64(n)
	wcancel()
	cancel()
	if err := <-errc; err != nil {
		return res, fmt.Errorf("dispatcher: %w", err)
	}
	if werr != nil {
		return res, werr
	}
	if dead, err := st.DeadLetters(name); err != nil || len(dead) > 0 {
		return res, fmt.Errorf("%d events dead-lettered (%v)", len(dead), err)
	}
	res.sink = float64(n) / el.Seconds()
	return res, nil
}

func newTarget(ctx context.Context, name string, delay time.Duration) (*target, error) {
	switch name {
	case "stdout":
		return &target{
			sink: stdout.NewSink(io.Discard), concurrency: 1, close: func() {},
			ceiling: func(_ context.Context, recs []store.Record) error {
				bw := bufio.NewWriter(io.Discard)
				for _, r := range recs {
					bw.Write(r.Event.Body)
					bw.WriteByte('\n')
				}
				return bw.Flush()
			},
		}, nil
	case "webhook", "webhook-teams":
		var payload *template.Payload
		if name == "webhook-teams" {
			var err error
			if payload, err = teamsPayload(); err != nil {
				return nil, err
			}
		}
		var got atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			got.Add(1)
			if delay > 0 {
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-r.Context().Done():
					t.Stop()
				}
			}
			w.WriteHeader(http.StatusNoContent)
		}))
		key := []byte("benchbridge-throughput-secret!!!")
		s, err := webhook.NewSink(webhook.Options{Name: name, URL: srv.URL + "/hook", Secrets: [][]byte{key}, Concurrency: 4, Payload: payload})
		if err != nil {
			srv.Close()
			return nil, err
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 4
		client := &http.Client{Transport: tr}
		return &target{
			sink: s, concurrency: 4,
			close: func() { s.Close(); tr.CloseIdleConnections(); srv.Close() },
			ceiling: func(ctx context.Context, recs []store.Record) error {
				return parallel(4, len(recs), func(i int) error {
					req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/hook", bytes.NewReader(recs[i].Event.Body))
					if err != nil {
						return err
					}
					req.Header.Set("Content-Type", event.ContentType)
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					return resp.Body.Close()
				})
			},
		}, nil
	case "nats", "jetstream":
		js := name == "jetstream"
		dir, err := os.MkdirTemp("", "benchbridge-nats-")
		if err != nil {
			return nil, err
		}
		srv, err := natsembed.Start(natsembed.Options{JetStream: js, StoreDir: dir})
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		nc, err := natsgo.Connect(srv.ClientURL())
		if err != nil {
			srv.Shutdown()
			return nil, err
		}
		stopAll := func() { nc.Close(); srv.Shutdown(); srv.WaitForShutdown(); os.RemoveAll(dir) }
		var jsc jetstream.JetStream
		if js {
			if jsc, err = jetstream.New(nc); err == nil {
				_, err = jsc.CreateStream(ctx, jetstream.StreamConfig{Name: "EXPORTS", Subjects: []string{"plugchoice.exports.>"}})
			}
			if err != nil {
				stopAll()
				return nil, fmt.Errorf("create stream: %w", err)
			}
		}
		s, err := natssink.NewSink(ctx, natssink.Options{Name: name, URLs: []string{srv.ClientURL()}, JetStream: js, Logger: quietLogger()})
		if err != nil {
			stopAll()
			return nil, err
		}
		msg := func(r store.Record) *natsgo.Msg {
			return &natsgo.Msg{Subject: s.Subject(r.Event), Data: r.Event.Body,
				Header: natsgo.Header{"Nats-Msg-Id": {r.Event.ID + "-ceiling"}, "Content-Type": {event.ContentType}}}
		}
		tg := &target{sink: s, concurrency: 1, close: func() { s.Close(); stopAll() }}
		if js {
			tg.ceiling = func(ctx context.Context, recs []store.Record) error {
				for _, r := range recs {
					m := msg(r)
					if _, err := jsc.PublishMsg(ctx, m, jetstream.WithMsgID(m.Header.Get("Nats-Msg-Id"))); err != nil {
						return err
					}
				}
				return nil
			}
			tg.ceilingRaw = func(ctx context.Context, recs []store.Record) error {
				futs := make([]jetstream.PubAckFuture, 0, len(recs))
				for _, r := range recs {
					m := msg(r)
					m.Header.Set("Nats-Msg-Id", r.Event.ID+"-async")
					f, err := jsc.PublishMsgAsync(m)
					if err != nil {
						return err
					}
					futs = append(futs, f)
				}
				for _, f := range futs {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						return err
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			}
		} else {
			tg.ceiling = func(ctx context.Context, recs []store.Record) error {
				for _, r := range recs {
					if err := nc.PublishMsg(msg(r)); err != nil {
						return err
					}
					if err := nc.FlushTimeout(5 * time.Second); err != nil {
						return err
					}
				}
				return nil
			}
			tg.ceilingRaw = func(ctx context.Context, recs []store.Record) error {
				for _, r := range recs {
					if err := nc.PublishMsg(msg(r)); err != nil {
						return err
					}
				}
				return nc.FlushTimeout(5 * time.Second)
			}
		}
		return tg, nil
	default:
		return nil, fmt.Errorf("unknown sink %q (expected stdout, webhook, webhook-teams, nats or jetstream)", name)
	}
}

// parallel runs fn(0..n-1) on k workers and returns the first error.
func parallel(k, n int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}
