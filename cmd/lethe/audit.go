package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/imagineif/lethe/audit"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/progress"
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// auditStream declares the flags that say where an auditor reads the stream, and returns
// a function that connects: to a running server with an auditor's credentials, or to a
// stopped server's data directory.
func auditStream(f flags, getenv func(string) string, stderr io.Writer) func(ctx context.Context) (*nats.Conn, func(), error) {
	url := f.str("nats-url", localURL(getenv, "LETHE_NATS_LISTEN", "nats", "LETHE_NATS_TLS_CERT", "tls", "nats://127.0.0.1:4222"),
		"NATS server holding the stream (read-only access is enough); by default the one LETHE_NATS_LISTEN gives lethe serve")
	data := f.String("data", "", "read the stream from a stopped server's data directory instead of --nats-url")
	creds := f.str("nats-creds", "", "the auditor's NATS credentials file (from 'lethe auditors add')")
	return func(ctx context.Context) (*nats.Conn, func(), error) {
		if *data != "" {
			ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: filepath.Join(*data, "nats"), DontListen: true, NoSigs: true, NoLog: true})
			if err != nil {
				return nil, nil, err
			}
			ns.Start()
			if !ns.ReadyForConnections(30 * time.Second) {
				ns.Shutdown()
				return nil, nil, errors.New("NATS on the data directory did not start")
			}
			nc, err := nats.Connect("", nats.InProcessServer(ns))
			if err != nil {
				ns.Shutdown()
				return nil, nil, err
			}
			return nc, func() { nc.Close(); ns.Shutdown() }, nil
		}
		opts := []nats.Option{nats.Name("lethe-audit")}
		if *creds != "" {
			o, err := node.CredentialsOption(*creds)
			if err != nil {
				return nil, nil, err
			}
			opts = append(opts, o)
		}
		var nc *nats.Conn
		err := untilStarted(ctx, stderr, *url, func() (err error) {
			nc, err = nats.Connect(*url, opts...)
			return err
		}, natsStarting)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to NATS: %w", err)
		}
		return nc, nc.Close, nil
	}
}

func cmdAuditReplay(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("audit replay", getenv, stderr)
	connect := auditStream(f, getenv, stderr)
	format := f.String("format", "auto", "json (JSON lines), table, or auto (table on a terminal)")
	if err := f.parse(args); err != nil {
		return err
	}
	nc, done, err := connect(ctx)
	if err != nil {
		return err
	}
	defer done()
	v, err := schemas.NewValidator()
	if err != nil {
		return err
	}
	expunged, err := audit.ExpungedTxns(ctx, nc)
	if err != nil {
		return err
	}
	a := audit.New(v, expunged)
	table := *format == "table" || (*format == "auto" && progress.IsTerminal(stdout))
	var tw *tabwriter.Writer
	enc := json.NewEncoder(stdout)
	if table {
		tw = tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SEQ\tTIME\tTYPE\tTXN\tBARCODE\tPATRON\tCENTS")
	}
	var n, sealed, gone int
	read := func(fn func(ledger.Msg) error) error { return ledger.ReadDirect(ctx, nc, ledger.ReadOptions{}, fn) }
	err = audit.InOrder(read, runtime.GOMAXPROCS(0), a.Decode, func(d audit.Decoded) error {
		if d.Err != nil {
			return fmt.Errorf("sequence %d: %w", d.Seq, d.Err)
		}
		for _, l := range d.Lines {
			n++
			switch l.Patron {
			case "sealed":
				sealed++
			case "expunged":
				gone++
			}
			if table {
				cents := ""
				if l.Amount != nil {
					cents = fmt.Sprint(*l.Amount)
				}
				seq := fmt.Sprint(l.Seq)
				if l.Index > 0 {
					seq += "/" + fmt.Sprint(l.Index) // one of a command's several events
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", seq, l.Time.Format(time.RFC3339), shortType(l.Type), short(l.TxnID), l.Barcode, l.Patron, cents)
				continue
			}
			if err := enc.Encode(l); err != nil {
				return err
			}
		}
		return nil
	})
	if tw != nil {
		tw.Flush()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "%d events (lethe audit verify checks them against their schemas and the signed checkpoints); patron references: %d sealed (open or awaiting expunge), %d expunged\n", n, sealed, gone)
	return nil
}

func shortType(t string) string {
	const p = "lethe."
	if len(t) > len(p) && t[:len(p)] == p {
		return t[len(p):]
	}
	return t
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
