package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/imagineif/lethe/demo"
	"github.com/imagineif/lethe/node"
)

// cmdDemo runs the simulated library (package demo) on a fresh server, with a short
// erasure window and a short library day, so that loans, fines and forgetting happen while
// one watches.
func cmdDemo(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("demo", getenv, stderr)
	// A short erasure window, to watch it in a short demo; no NATS port unless asked for.
	build := serviceFlags(f, "", "10s", "off")
	duration := f.Duration("duration", 0, "how long the simulated kiosks run; 0 runs until Ctrl-C")
	items := f.Int("items", 2000, "items to catalog")
	patrons := f.Int("patrons", 300, "patrons to register (some minors, with caregivers)")
	kiosks := f.Int("kiosks", 6, "simulated kiosks")
	day := f.Duration("day", time.Second, "how long a library day lasts in the demo (loans, fines and lost items run on it)")
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := build()
	if err != nil {
		return &exitError{2, err}
	}
	if cfg.Data == "" {
		dir, err := os.MkdirTemp("", "lethe-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.Data = dir
	}
	cfg.Rules.Day = *day
	cfg.Rules.LoanDays = 7
	cfg.RulesInterval = *day
	// Said before anything is opened: the first thing a person sees after the first
	// build's long silence.
	fmt.Fprintf(stdout, "lethe demo: starting a simulated library in %s; a library day lasts %s\n", cfg.Data, *day)
	password, err := demo.Account(cfg.Data)
	if err != nil {
		return err
	}
	s, err := node.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Stop()
	if s.HTTPURL != "" {
		fmt.Fprintf(stdout, "dashboard: %s/   (staff API under %s/api/, metrics at %s/metrics)\n", s.HTTPURL, s.HTTPURL, s.HTTPURL)
		fmt.Fprintf(stdout, "sign in as %q with password %s (an administrator made for this demo; a real server's accounts come from 'lethe staff add')\n", demo.User, password)
	}
	// These lines say what the seeding does to a log or a pipe too; on a terminal Seed
	// also draws a bar for each step on stderr.
	fmt.Fprintf(stdout, "cataloging %s items and registering %s patrons...\n", count(*items), count(*patrons))
	seeded := time.Now()
	c := demo.NewLocal(s)
	defer c.Close() // before s.Stop: the kiosks hang up first
	lib, err := demo.Seed(ctx, c, *items, *patrons, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "seeded in %s; %d simulated kiosks start now\n", time.Since(seeded).Round(time.Millisecond), *kiosks)
	if url := s.NATSURL(); url != "" {
		// With --nats-listen, a visitor can be a kiosk too, with credentials of its own.
		path, err := demo.VisitorKiosk(s, cfg.Data, url)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "kiosk API: %s; be a kiosk: lethe kiosk --nats-url %s --nats-creds %s info %s\n", url, url, path, lib.Cards[0])
	}
	runCtx := ctx
	if *duration > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, *duration)
		defer cancel()
	}
	totals, err := lib.Run(runCtx, c, demo.RunConfig{Kiosks: *kiosks, Summary: stdout})
	if err != nil {
		return err
	}
	// Let the last closes be expunged and erased before the totals.
	if _, err := s.Expunger.ExpungeNow(context.Background()); err != nil {
		return err
	}
	if err := s.Expunger.Sweep(context.Background()); err != nil {
		return err
	}
	st := s.Expunger.Stats()
	fmt.Fprintf(stdout, "totals: checked out %d, returned %d, renewed %d, fines %d, payments %d, refused %d, errors %d; transactions closed and expunged %d (expunge lag p50 %s, p99 %s; erasure lag p99 %s)\n",
		totals.Checkouts.Load(), totals.Returns.Load(), totals.Renewals.Load(), totals.Fines.Load(), totals.Payments.Load(),
		totals.Refused.Load(), totals.Errors.Load(), st.Expunged, st.ExpungeLagP50.Round(time.Microsecond), st.ExpungeLagP99.Round(time.Microsecond), st.ErasureLagP99.Round(time.Millisecond))
	return nil
}
