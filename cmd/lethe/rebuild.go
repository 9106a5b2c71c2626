package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/imagineif/lethe/desk"
	"github.com/imagineif/lethe/node"
	"github.com/imagineif/lethe/projections"
)

func cmdRebuild(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("projections rebuild", getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory of a stopped server")
	masterFile := f.str("master-key-file", "", "master key file; default <data>/master.key")
	level := f.str("log-level", "warn", "debug, info, warn or error")
	tz := f.str("timezone", "Local", "the library's time zone (as given to serve), for daily statistics")
	if err := f.parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("--timezone: %w", err)
	}
	n, err := node.Open(ctx, node.Config{Data: *data, NATSListen: "off", MasterKeyFile: *masterFile,
		MasterKey: getenv("LETHE_MASTER_KEY"), Location: loc, Logger: logger, Existing: true})
	if err != nil {
		return err
	}
	defer n.Close()
	if err := n.Proj.CatchUp(ctx, n.JS); err != nil {
		return fmt.Errorf("catch up live projections: %w", err)
	}
	tmp, err := os.MkdirTemp(*data, "rebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	diff, err := n.RebuildProjections(ctx, filepath.Join(tmp, "projections"), projections.Config{Location: loc, Logger: logger})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	from := fmt.Sprintf("rebuilt from %d messages", n.Proj.Applied())
	if diff.Unchecked > 0 {
		from += fmt.Sprintf(" (the first %d as the last signed checkpoint covers them, Merkle root verified, not checked against their schemas again)", diff.Unchecked)
	}
	if diff.Equal() {
		fmt.Fprintf(stdout, "%s: equal to the live projections, row for row\n", from)
		return nil
	}
	fmt.Fprintf(stdout, "%s: DIFFERENT: %d rows missing from the rebuild, %d extra, %d changed (row kinds %v)\n",
		from, diff.Missing, diff.Extra, diff.Changed, diff.Examples)
	return &exitError{1, fmt.Errorf("projections differ from a rebuild")}
}

// cmdSkip records, through a running server, an administrator's decision that the
// projections pass over the event they are stopped at.
func cmdSkip(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	f := newFlags("projections skip", getenv, stderr)
	connect := clientFlags(f, stdin, stderr)
	reason := f.String("reason", "", "why the event is passed over (recorded on the stream with your account)")
	pos, err := parseInterleaved(f, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *reason == "" {
		return &exitError{2, errors.New("usage: lethe projections skip SEQ --reason TEXT   (SEQ: where /healthz says the projections stopped)")}
	}
	seq, err := strconv.ParseUint(pos[0], 10, 64)
	if err != nil || seq == 0 {
		return &exitError{2, errors.New("SEQ must be a stream sequence number")}
	}
	c, err := connect(ctx)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(desk.SkipRequest{Seq: seq, Reason: *reason})
	if err != nil {
		return err
	}
	out, err := c.send(ctx, http.MethodPost, "/api/projections/skip", raw)
	if err != nil {
		return err
	}
	var r desk.SkipResult
	if err := json.Unmarshal(out, &r); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "recorded: the projections pass over sequence %d (skip record at sequence %d)\n", r.Skipped, r.Record)
	return nil
}
