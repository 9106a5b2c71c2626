// Command lethe is the circulation ledger that forgets on purpose: one binary that runs an
// embedded NATS JetStream server, the ledger, the projections, the expunger and the staff
// HTTP API, and the tools around them (demo, audit, import, key rotation, rebuild).
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "lethe:", err)
		os.Exit(exitCode(err))
	}
}
