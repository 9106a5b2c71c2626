package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/node"
)

// cmdKeysRotate re-wraps every key under a fresh master key and destroys the old master
// key. Residue of keys wrapped under the old master (freed disk blocks, old backups) can
// then never be unwrapped. It runs with the server stopped (the keystore is locked while
// lethe serve runs).
//
// Crash safety: keystore.RotateFile goes in journaled steps, and the next open of the
// keystore (serve, projections rebuild, keys rotate) finishes or undoes a rotation that a
// crash interrupted (keystore.OpenFile; the states are in the keystore package comment).
// If it finishes one, that was the rotation asked for, and keys rotate stops there.
func cmdKeysRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("keys rotate", getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory")
	masterFile := f.str("master-key-file", "", "current master key file; default <data>/master.key")
	keyringFile := f.str("backup-keyring", "", "the backup keyring, re-sealed under the new key; default <master-key-file>.backups (then moved beside the new file)")
	newFile := f.String("new-master-key-file", "", "where to write the new master key; default: replace the current file")
	if err := f.parse(args); err != nil {
		return err
	}
	if getenv("LETHE_MASTER_KEY") != "" {
		return errors.New("the master key comes from LETHE_MASTER_KEY: rotate with --new-master-key-file after moving it to a file, or rotate in your KMS")
	}
	path := *masterFile
	if path == "" {
		path = filepath.Join(*data, "master.key")
	}
	dir := filepath.Join(*data, "keystore")
	if _, err := os.Stat(dir); err != nil {
		return fmt.Errorf("%s is not a Lethe data directory (no keystore/ in it): check --data", *data)
	}
	ks, kf, err := keystore.OpenFile(ctx, dir, path, nil)
	if err != nil {
		return err
	}
	defer func() {
		if ks != nil {
			ks.Close()
		}
	}()
	switch kf.Interrupted {
	case keystore.RotationFinished:
		if err := ks.Close(); err != nil {
			return err
		}
		ks = nil
		old := "the old master key"
		if kf.Destroyed != "" {
			old = "master key " + kf.Destroyed
		}
		fmt.Fprintf(stdout, "finished an interrupted rotation: every key is now wrapped under master key %s, in %s; %s is destroyed\n", kf.Master.ID, kf.Path, old)
		return ctx.Err()
	case keystore.RotationUndone:
		fmt.Fprintln(stdout, "undid an interrupted rotation (its new key had wrapped nothing and is destroyed); rotating now")
	}
	// The backup keyring is sealed under the new key as well before anything is
	// re-wrapped: whichever key survives opens every backup.
	keyring := *keyringFile
	if keyring == "" {
		keyring = backup.KeyringPath(kf.Path)
	}
	also := func(old, next keystore.MasterKey, nextPath string) error {
		target := keyring
		if *keyringFile == "" {
			target = backup.KeyringPath(nextPath)
		}
		return backup.OpenKeyring(keyring).Reseal(old, next, target)
	}
	fresh, err := ks.RotateFile(ctx, kf, keystore.FileRotation{NewPath: *newFile, Step: rotationStep(ctx), Also: also})
	if err != nil {
		return fmt.Errorf("%w (the next open of the keystore finishes or undoes the rotation)", err)
	}
	if err := ks.Close(); err != nil {
		return err
	}
	ks = nil
	fmt.Fprintf(stdout, "rotated: every key is now wrapped under master key %s; master key %s is destroyed\n", fresh.Master.ID, kf.Master.ID)
	if *newFile != "" {
		fmt.Fprintf(stdout, "the new master key is in %s: point --master-key-file (LETHE_MASTER_KEY_FILE) at it\n", fresh.Path)
	}
	return ctx.Err()
}

// rotationStepKey is the context key of a test hook: a func(keystore.Step) error that
// keys rotate passes to keystore.RotateFile as FileRotation.Step. Only the tests set it
// (child_test.go), to kill a lethe process at a chosen step; no flag or environment
// variable of lethe reaches it.
type rotationStepKey struct{}

func rotationStep(ctx context.Context) func(keystore.Step) error {
	f, _ := ctx.Value(rotationStepKey{}).(func(keystore.Step) error)
	return f
}

// cmdKeysRotateCheckpoint replaces the key that signs the stream's checkpoints, on a
// stopped server: the old key signs everything so far and a note naming the new one
// (checkpoint.key_rotated), so an auditor who pinned the old key follows the change.
func cmdKeysRotateCheckpoint(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("keys rotate-checkpoint", getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory of a stopped server")
	masterFile := f.str("master-key-file", "", "master key file; default <data>/master.key")
	level := f.str("log-level", "warn", "debug, info, warn or error")
	if err := f.parse(args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, *level)
	if err != nil {
		return err
	}
	s, err := node.Start(ctx, node.ServiceConfig{
		Config: node.Config{Data: *data, NATSListen: "off", MasterKeyFile: *masterFile, MasterKey: getenv("LETHE_MASTER_KEY"),
			Location: time.Local, Logger: logger, Existing: true},
		HTTP: "off", SweepInterval: time.Minute, RulesInterval: time.Hour, Now: time.Now,
	})
	if err != nil {
		return err
	}
	old, next, err := s.RotateCheckpointKey(ctx)
	if serr := s.Stop(); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "checkpoints are now signed by %s\nannounced on the stream under %s, which signed everything before; publish the new key beside the old\n", next, old)
	return nil
}
