package node

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/imagineif/lethe/access"
	"github.com/imagineif/lethe/backup"
	"github.com/imagineif/lethe/identity"
	"github.com/imagineif/lethe/keystore"
	"github.com/imagineif/lethe/ledger"
	"github.com/imagineif/lethe/staff"
)

// RestoreConfig is what a restore needs: the backup file, and the Config of the data
// directory to make (Data must not exist or be empty; the master key must be given).
type RestoreConfig struct {
	Config
	File string
	// StreamFrom is an old data directory whose nats/ survived the loss (its keystore did
	// not): its streams, which extend the backup's, are taken in place of the backup's, so
	// that nothing acknowledged after the backup is lost. Empty: the backup's streams.
	StreamFrom string
	Now        func() time.Time
}

// Restored says what a restore made.
type Restored struct {
	Header    backup.Header
	Streams   map[string]uint64 // last sequence of each stream restored
	Keys      int               // keys in the backup
	Destroyed int               // of them, keys destroyed again before the restore finished: their transactions had closed
	Open      int               // open transactions after the restore
}

// Restore makes a data directory from a backup. It fails, changing nothing outside
// cfg.Data, when the backup's key is gone (its retention ended: backup.ErrKeyGone), the
// file is damaged or cut short, or the master key is not the one that sealed the keyring.
// Then it opens the directory as serve would, without listeners: the projections are
// built from the stream, and every transaction the stream says closed has its key
// destroyed again (the expunger's reconciliation), and swept, before Restore returns.
func Restore(ctx context.Context, rc RestoreConfig) (Restored, error) {
	_, statErr := os.Stat(rc.Data)
	existed := statErr == nil
	res, err := restore(ctx, rc)
	if err != nil {
		// What a failed restore made goes, so that the same command can be run again; a
		// directory that was not empty was refused before anything was written.
		if entries, rerr := os.ReadDir(rc.Data); rerr == nil && !errors.Is(err, errNotEmpty) {
			for _, e := range entries {
				os.RemoveAll(filepath.Join(rc.Data, e.Name()))
			}
			if !existed {
				os.Remove(rc.Data)
			}
		}
		return res, fmt.Errorf("restore: %w", err)
	}
	return res, nil
}

// errNotEmpty refuses a restore into a directory that holds something.
var errNotEmpty = errors.New("not empty: restore into a new directory")

func restore(ctx context.Context, rc RestoreConfig) (Restored, error) {
	var res Restored
	now := rc.Now
	if now == nil {
		now = time.Now
	}
	if rc.Data == "" {
		return res, errors.New("no data directory given (--data)")
	}
	if entries, err := os.ReadDir(rc.Data); err == nil && len(entries) > 0 {
		return res, fmt.Errorf("%s is %w", rc.Data, errNotEmpty)
	}
	if rc.MasterKey == "" && rc.MasterKeyFile == "" {
		return res, errors.New("give the master key (--master-key-file or LETHE_MASTER_KEY): a backup is restored under the master key that seals its keyring")
	}
	master, err := keystore.LoadMaster(rc.MasterKeyFile, rc.MasterKey)
	if err != nil {
		return res, fmt.Errorf("master key: %w", err)
	}
	krPath := rc.BackupKeyring
	if krPath == "" {
		if rc.MasterKeyFile == "" {
			return res, errors.New("the master key comes from LETHE_MASTER_KEY: give the backup keyring with --backup-keyring")
		}
		krPath = backup.KeyringPath(rc.MasterKeyFile)
	}
	f, err := os.Open(rc.File)
	if err != nil {
		return res, err
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	h, err := backup.ReadHeader(br)
	if err != nil {
		return res, err
	}
	res.Header = h
	ident, _, err := backup.OpenKeyring(krPath).Identity(master, h.ID, now())
	if err != nil {
		return res, err
	}
	r, err := backup.NewReader(br, ident)
	if err != nil {
		return res, err
	}
	if err := prepareDataDir(rc.Data, false, rc.Logger); err != nil {
		return res, err
	}
	if rc.StreamFrom != "" {
		if err := copyDir(filepath.Join(rc.StreamFrom, "nats"), filepath.Join(rc.Data, "nats")); err != nil {
			return res, fmt.Errorf("take the streams of %s: %w", rc.StreamFrom, err)
		}
	}
	// The streams go in through the JetStream API of a server of the new directory's own,
	// with no listener.
	ncfg := rc.Config
	ncfg.NATSURL, ncfg.NATSListen = "", "off"
	n, err := OpenNATS(ncfg)
	if err != nil {
		return res, err
	}
	defer n.Close()
	seen := map[string]bool{}
	info := map[string][]byte{}
	for {
		name, sec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		if seen[name] {
			return res, fmt.Errorf("%w: section %s twice", backup.ErrFormat, name)
		}
		seen[name] = true
		switch name {
		case "header":
			var inner backup.Header
			data, err := io.ReadAll(io.LimitReader(sec, 1<<20))
			if err != nil {
				return res, err
			}
			if json.Unmarshal(data, &inner) != nil || inner.ID != h.ID || inner.Keys != h.Keys || !maps(inner.Streams, h.Streams) {
				return res, fmt.Errorf("%w: the header does not match the sealed one", backup.ErrFormat)
			}
		case "keys":
			rr := recordReader{br: bufio.NewReader(sec), n: 3}
			err := keystore.Import(filepath.Join(rc.Data, "keystore"), master, func() (keystore.ExportedKey, bool, error) {
				f, ok, err := rr.next()
				if !ok || err != nil {
					return keystore.ExportedKey{}, ok, err
				}
				if len(f[2]) != 8 {
					return keystore.ExportedKey{}, false, fmt.Errorf("%w: bad key record", backup.ErrFormat)
				}
				res.Keys++
				return keystore.ExportedKey{DBKey: f[0], Key: f[1], Created: time.UnixMilli(int64(binary.BigEndian.Uint64(f[2])))}, true, nil
			})
			if err != nil {
				return res, err
			}
		case "staff":
			rr := recordReader{br: bufio.NewReader(sec), n: 2}
			err := staff.Import(filepath.Join(rc.Data, "staff"), func() ([]byte, []byte, bool, error) {
				f, ok, err := rr.next()
				if !ok || err != nil {
					return nil, nil, ok, err
				}
				return f[0], f[1], true, nil
			})
			if err != nil {
				return res, err
			}
		case "identities":
			data, err := io.ReadAll(io.LimitReader(sec, 64<<20))
			if err != nil {
				return res, err
			}
			if len(data) > 0 {
				if err := os.WriteFile(filepath.Join(rc.Data, identity.FileName), data, 0o600); err != nil {
					return res, err
				}
			}
		default:
			stream, part, ok := streamSection(name)
			if !ok {
				return res, fmt.Errorf("%w: unknown section %q", backup.ErrFormat, name)
			}
			switch {
			case part == "info":
				if info[stream], err = io.ReadAll(io.LimitReader(sec, 1<<20)); err != nil {
					return res, err
				}
			case rc.StreamFrom != "":
				// The surviving stream is taken; the backup's is passed over.
			case info[stream] == nil:
				return res, fmt.Errorf("%w: stream data before its information", backup.ErrFormat)
			default:
				if err := restoreStream(ctx, n.NC, stream, info[stream], sec); err != nil {
					return res, err
				}
			}
		}
	}
	for _, want := range []string{"header", "keys", "staff", "identities"} {
		if !seen[want] {
			return res, fmt.Errorf("%w: no %s section", backup.ErrFormat, want)
		}
	}
	n.Close()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	// Open it as serve does, without listeners: the projections follow the stream, and
	// the reconciliation destroys and sweeps the key of every transaction it says closed.
	scfg := ServiceConfig{Config: rc.Config, HTTP: "off", SweepInterval: time.Minute, RulesInterval: time.Hour, Now: rc.Now,
		KeyPool: -1} // it serves no one: no keys ahead of need
	scfg.NATSURL, scfg.NATSListen, scfg.Existing = "", "off", true
	if scfg.Now == nil {
		scfg.Now = time.Now
	}
	s, err := Start(ctx, scfg)
	if err != nil {
		return res, err
	}
	res.Streams = map[string]uint64{}
	for _, name := range []string{ledger.StreamName, access.StreamName} {
		st, err := s.JS.Stream(ctx, name)
		if err != nil {
			s.Stop()
			return res, fmt.Errorf("stream %s: %w", name, err)
		}
		si, err := st.Info(ctx)
		if err != nil {
			s.Stop()
			return res, err
		}
		res.Streams[name] = si.State.LastSeq
		if si.State.LastSeq < h.Streams[name] {
			s.Stop()
			return res, fmt.Errorf("the stream %s holds %d events, fewer than the backup's %d: --stream-from names an older library", name, si.State.LastSeq, h.Streams[name])
		}
	}
	if err := s.Proj.WaitApplied(ctx, res.Streams[ledger.StreamName]); err != nil {
		s.Stop()
		return res, err
	}
	if err := s.Expunger.Reconcile(ctx); err != nil {
		s.Stop()
		return res, err
	}
	// Before the restore returns, the bytes of every key destroyed again are gone.
	var sweepErr error
	for range 5 {
		if sweepErr = s.Expunger.Sweep(ctx); sweepErr == nil {
			break
		}
	}
	if sweepErr != nil {
		s.Stop()
		return res, sweepErr
	}
	ks := s.Keys.Stats()
	res.Destroyed = res.Keys - int(ks.Transactions+ks.Profiles) - systemKeys
	counts, err := s.Proj.Counts()
	if err != nil {
		s.Stop()
		return res, err
	}
	res.Open = counts.OpenTxns
	return res, s.Stop()
}

// systemKeys is how many system keys every keystore holds.
const systemKeys = 5

func streamSection(name string) (stream, part string, ok bool) {
	for _, s := range []string{ledger.StreamName, access.StreamName} {
		for _, p := range []string{"info", "data"} {
			if name == "stream/"+s+"/"+p {
				return s, p, true
			}
		}
	}
	return "", "", false
}

func maps(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// copyDir copies the regular files under src to dst, which must not exist.
func copyDir(src, dst string) error {
	if _, err := os.Stat(src); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
}
