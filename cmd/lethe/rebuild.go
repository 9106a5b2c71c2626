package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

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
	n, err := openNode(ctx, nodeConfig{Data: *data, NATSListen: "off", MasterKeyFile: *masterFile,
		MasterKey: getenv("LETHE_MASTER_KEY"), Location: loc, Logger: logger})
	if err != nil {
		return err
	}
	defer n.close()
	if err := n.proj.CatchUp(ctx, n.js); err != nil {
		return fmt.Errorf("catch up live projections: %w", err)
	}
	tmp, err := os.MkdirTemp(*data, "rebuild-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	diff, err := n.proj.Rebuild(ctx, n.js, filepath.Join(tmp, "projections"), projections.Config{Location: loc, Logger: logger})
	if err != nil {
		return fmt.Errorf("rebuild: %w", err)
	}
	if diff.Equal() {
		fmt.Fprintf(stdout, "rebuilt from %d events: equal to the live projections, row for row\n", n.proj.Applied())
		return nil
	}
	fmt.Fprintf(stdout, "rebuilt from %d events: DIFFERENT: %d rows missing from the rebuild, %d extra, %d changed (row kinds %v)\n",
		n.proj.Applied(), diff.Missing, diff.Extra, diff.Changed, diff.Examples)
	return &exitError{1, fmt.Errorf("projections differ from a rebuild")}
}
