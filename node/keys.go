package node

import (
	"context"
	"path/filepath"

	"github.com/imagineif/lethe/keystore"
)

// openKeys opens a node's keystore. If the master key file's rotation was interrupted, it
// is first finished or undone (keystore.OpenFile), so that serve and projections rebuild
// start after a crash of keys rotate at any step; otherwise loadMaster reads the key, or
// generates it on a fresh install. Errors are node.open's as before: loadMaster's as they
// are, the keystore's through inUse.
func openKeys(ctx context.Context, cfg Config) (*keystore.Store, keystore.MasterKey, string, error) {
	dir := filepath.Join(cfg.Data, "keystore")
	if cfg.MasterKey == "" {
		path := cfg.MasterKeyFile
		if path == "" {
			path = filepath.Join(cfg.Data, "master.key")
		}
		if keystore.RotationPending(path) {
			ks, kf, err := keystore.OpenFile(ctx, dir, path, cfg.Logger)
			if err != nil {
				return nil, keystore.MasterKey{}, "", inUse(cfg.Data, err)
			}
			if kf.Path != path && cfg.Logger != nil {
				cfg.Logger.Warn("an interrupted rotation put the master key in another file: give that file with --master-key-file from now on", "file", kf.Path)
			}
			return ks, kf.Master, kf.Path, nil
		}
	}
	master, err := loadMaster(cfg)
	if err != nil {
		return nil, keystore.MasterKey{}, "", err
	}
	ks, err := keystore.Open(dir, master, cfg.Logger)
	if err != nil {
		return nil, keystore.MasterKey{}, "", inUse(cfg.Data, err)
	}
	return ks, master, masterFile(cfg), nil
}

// masterFile is the master key's file, or "" when it comes from LETHE_MASTER_KEY.
func masterFile(cfg Config) string {
	switch {
	case cfg.MasterKey != "":
		return ""
	case cfg.MasterKeyFile != "":
		return cfg.MasterKeyFile
	}
	return filepath.Join(cfg.Data, "master.key")
}
