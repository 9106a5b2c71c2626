package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/imagineif/lethe/keystore"
)

// cmdKeysRotate re-wraps every key under a fresh master key and destroys the old master
// key. Residue of keys wrapped under the old master (freed disk blocks, old backups) can
// then never be unwrapped. It runs with the server stopped (the keystore is locked while
// lethe serve runs).
//
// Crash safety: the new key is written to <file>.next before anything is re-wrapped; the
// re-wrap is one atomic batch; openKeystore finishes an interrupted swap.
func cmdKeysRotate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	f := newFlags("keys rotate", getenv, stderr)
	data := f.str("data", "./lethe-data", "data directory")
	masterFile := f.str("master-key-file", "", "current master key file; default <data>/master.key")
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
	next := *newFile
	if next == "" {
		next = path + ".next"
	}
	ks, old, err := openKeystore(*data, path)
	if err != nil {
		return err
	}
	defer func() {
		if ks != nil {
			ks.Close()
		}
	}()
	fresh, err := keystore.GenerateMasterFile(next)
	if err != nil {
		return fmt.Errorf("new master key: %w", err)
	}
	if err := ks.Rotate(ctx, fresh); err != nil {
		return fmt.Errorf("rotate: %w", err)
	}
	if err := ks.Close(); err != nil {
		return err
	}
	ks = nil
	if err := finishRotation(path, next, *newFile == ""); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "rotated: every key is now wrapped under master key %s; master key %s is destroyed\n", fresh.ID, old.ID)
	if *newFile != "" {
		fmt.Fprintf(stdout, "the new master key is in %s: point --master-key-file (LETHE_MASTER_KEY_FILE) at it\n", *newFile)
	}
	return ctx.Err()
}

// finishRotation destroys the old master key file and, when rotating in place, moves the
// new one into its place.
func finishRotation(path, next string, inPlace bool) error {
	if err := keystore.DestroyMasterFile(path); err != nil {
		return fmt.Errorf("destroy old master key: %w", err)
	}
	if inPlace {
		if err := os.Rename(next, path); err != nil {
			return fmt.Errorf("install new master key: %w", err)
		}
	}
	return nil
}

// openKeystore opens the keystore with the master key in path. If a rotation in place was
// interrupted after the re-wrap, the keys are wrapped under <path>.next: it finishes the
// swap and opens with that.
func openKeystore(data, path string) (*keystore.Store, keystore.MasterKey, error) {
	dir := filepath.Join(data, "keystore")
	m, err := keystore.LoadMaster(path, "")
	if err == nil {
		ks, err := keystore.Open(dir, m, nil)
		if err == nil {
			return ks, m, nil
		}
		if !errors.Is(err, keystore.ErrWrongMaster) {
			return nil, m, err
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, m, err
	}
	next := path + ".next"
	m, err = keystore.LoadMaster(next, "")
	if err != nil {
		return nil, m, fmt.Errorf("master key does not open the keystore and no interrupted rotation to finish: %w", err)
	}
	ks, err := keystore.Open(dir, m, nil)
	if err != nil {
		return nil, m, err
	}
	if _, statErr := os.Stat(path); statErr == nil {
		if err := keystore.DestroyMasterFile(path); err != nil {
			ks.Close()
			return nil, m, err
		}
	}
	if err := os.Rename(next, path); err != nil {
		ks.Close()
		return nil, m, err
	}
	return ks, m, nil
}
