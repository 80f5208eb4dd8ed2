package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/exportbridge/exportbridge/natsstore"
	"github.com/exportbridge/exportbridge/progress"
	"github.com/exportbridge/exportbridge/store"
)

// cmdMigrate copies the bolt store in STATE_DIR into the JetStream store, once.
func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", "migrate --to nats", stderr)
	to := fs.String("to", "", "the store to copy the bolt store of STATE_DIR into (nats)")
	if err := fs.Parse(args); err != nil {
		return usageFlagErr(err)
	}
	if *to != "nats" || fs.NArg() > 0 {
		return usageErr("migrate needs --to nats and no arguments (it copies the bolt store of EXPORTBRIDGE_STATE_DIR into JetStream)")
	}
	cfg, err := loadConfig("migrate")
	if err != nil {
		return err
	}
	urls := cfg.StoreNATSURL
	if len(urls) == 0 {
		urls = cfg.NATSURL
	}
	if len(urls) == 0 {
		return usageErr("migrate --to nats: EXPORTBRIDGE_STORE_NATS_URL is empty (expected the NATS servers that will hold the state, such as nats://nats:4222)")
	}
	from, err := store.Open(cfg.StateDir, store.Options{MustExist: true})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer from.Close()
	nopts, err := storeNATSOptions(cfg)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	meter := progress.New(stderr, "migrate")
	dst, err := natsstore.OpenURL(ctx, strings.Join(urls, ","), natsstore.Options{
		Replicas: cfg.StoreNATSReplicas, Duplicates: duplicateWindow(cfg), Progress: meter.Report,
	}, nopts...)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer dst.Close()
	m, err := natsstore.Migrate(from, dst, func(sink string, queued, dead int) {
		meter.Println(fmt.Sprintf("migrate: sink %s: %d queued events, %d dead letters copied", sink, queued, dead))
	})
	meter.Finish()
	if err != nil {
		return err
	}
	if m.Already {
		fmt.Fprintf(stdout, "already migrated from %s at %s: nothing copied\n", m.From, m.At.Format("2006-01-02T15:04:05Z07:00"))
		return nil
	}
	fmt.Fprintf(stdout, "migrated %s into JetStream: %d exports, %d queued events, %d dead letters, %d metadata values (sinks: %s)\nnow run the bridge with EXPORTBRIDGE_STORE=nats\n",
		m.From, m.Exports, m.Queued, m.Dead, m.Meta, strings.Join(m.SinkNames, ", "))
	return nil
}
