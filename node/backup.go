package node

import (
	"bufio"
	"bytes"
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
	"github.com/imagineif/lethe/schemas"
	"github.com/nats-io/nats.go"
)

// Backups.
//
// A backup holds what cannot be rebuilt: the two streams (the ledger and the access
// record, as JetStream snapshots), every live key (unwrapped, so that it does not depend
// on the master key of the day), the staff accounts and the identity registry. The
// projections are rebuilt from the stream on restore. It is made while serving: the
// streams are snapshotted first, to a spool in the data directory, while the expunger
// holds its destroys (a key destroyed between the streams and the keys would leave a loan
// open in the backup without its key); then the keys are read and the hold ends. The hold
// lasts as long as the snapshots take on the local disk, never as long as the client
// takes to read. The whole is sealed with age to a key of its own in the backup keyring
// (package backup), which is destroyed when the retention ends.

// backupSpool is where a backup's stream snapshots wait for the client; a start removes
// what a crash left.
const backupSpool = "backup-spool"

// maxBackupHold bounds how long a backup may hold the expunger's destroys: a backup that
// would hold forgetting longer fails instead.
func (s *Service) maxBackupHold() time.Duration { return max(s.sweepInterval/4, 5*time.Second) }

// startBackups opens the keyring, destroys expired backup keys now and every hour, and
// removes a spool a crash left. Without a keyring (LETHE_MASTER_KEY and no
// --backup-keyring) the service runs and a backup says why it cannot be made.
func (s *Service) startBackups() error {
	if err := os.RemoveAll(filepath.Join(s.cfg.Data, backupSpool)); err != nil {
		return fmt.Errorf("remove the backup spool: %w", err)
	}
	if err := os.Mkdir(filepath.Join(s.cfg.Data, backupSpool), 0o700); err != nil {
		return fmt.Errorf("backup spool: %w", err)
	}
	s.backups, s.backupsErr = s.openKeyring()
	if s.backups != nil {
		s.goRun("backup keyring", func() error { s.pruneBackupKeys(s.runCtx); return nil })
	}
	return nil
}

func (s *Service) cfgNow() time.Time {
	if s.now != nil {
		return s.now()
	}
	return time.Now()
}

// keyring is the backup keyring of the node's configuration.
func (n *Node) openKeyring() (*backup.Keyring, error) {
	path := n.cfg.BackupKeyring
	if path == "" {
		if n.masterFile == "" {
			return nil, errors.New("the master key comes from LETHE_MASTER_KEY: give the backup keyring's file with --backup-keyring (keep it with the master key, off the data disk)")
		}
		path = backup.KeyringPath(n.masterFile)
	}
	return backup.OpenKeyring(path), nil
}

func (n *Node) retention() time.Duration {
	if n.cfg.BackupRetention > 0 {
		return n.cfg.BackupRetention
	}
	return backup.DefaultRetention
}

// Backup writes a backup of the whole library to w. It calls begin with the file's name
// once everything is read, before the first byte; if begin fails, nothing is written. It
// fails without writing anything when the snapshots would hold forgetting too long.
func (s *Service) Backup(ctx context.Context, begin func(name string) error, w io.Writer) error {
	if err := s.backup(ctx, begin, w); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	return nil
}

func (s *Service) backup(ctx context.Context, begin func(name string) error, w io.Writer) error {
	if s.Clustered() {
		// The keys are the cluster's, in its bucket, not this node's to write out; the
		// cluster's copies and a node's rejoining are its backup (README, Running a cluster).
		return schemas.Errorf(schemas.CodeUnavailable, "a node of a cluster makes no backup of its own: the cluster keeps three copies, and a lost node is restored by starting it again on an empty data directory")
	}
	if s.backupsErr != nil {
		return s.backupsErr
	}
	// One at a time: each spools the streams to the data disk and holds the expunger.
	if !s.backupMu.TryLock() {
		return schemas.Errorf(schemas.CodeConflict, "a backup is being made already; try again when it is done")
	}
	defer s.backupMu.Unlock()
	if s.staff == nil {
		return errors.New("no staff store open (--http off)")
	}
	spool, err := os.MkdirTemp(filepath.Join(s.cfg.Data, backupSpool), "b-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(spool)

	type stream struct {
		name string
		info []byte
		file string
		last uint64
	}
	streams := []*stream{{name: ledger.StreamName}, {name: access.StreamName}}
	var keys bytes.Buffer
	nkeys := 0
	defer func() { clear(keys.Bytes()) }()
	err = func() error {
		release := s.Expunger.Hold()
		defer release()
		holdCtx, cancel := context.WithTimeout(ctx, s.maxBackupHold())
		defer cancel()
		for _, st := range streams {
			st.file = filepath.Join(spool, st.name)
			f, err := os.OpenFile(st.file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
			if err != nil {
				return err
			}
			st.info, st.last, err = snapshotStream(holdCtx, s.NC, st.name, f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				if holdCtx.Err() != nil && ctx.Err() == nil {
					return fmt.Errorf("the snapshot of %s took longer than %s, which would hold forgetting too long; see Backups in the README", st.name, s.maxBackupHold())
				}
				return err
			}
		}
		return s.Keys.Export(func(k keystore.ExportedKey) error {
			nkeys++
			putRecord(&keys, k.DBKey, k.Key, binary.BigEndian.AppendUint64(nil, uint64(k.Created.UnixMilli())))
			return nil
		})
	}()
	if err != nil {
		return err
	}
	var accounts bytes.Buffer
	if err := s.staff.Export(func(k, v []byte) error { putRecord(&accounts, k, v); return nil }); err != nil {
		return err
	}
	ids, err := os.ReadFile(filepath.Join(s.cfg.Data, identity.FileName))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}

	entry, recipient, err := s.backups.Add(s.master, s.cfgNow(), s.retention())
	if err != nil {
		return err
	}
	h := backup.Header{ID: entry.ID, Created: entry.Created, Expires: entry.Expires, Streams: map[string]uint64{}, Keys: nkeys}
	for _, st := range streams {
		h.Streams[st.name] = st.last
	}
	if err := begin("lethe-" + entry.ID + ".backup"); err != nil {
		return err
	}
	bw, err := backup.NewWriter(w, h, recipient)
	if err != nil {
		return err
	}
	hj, _ := json.Marshal(h)
	type section struct {
		name string
		open func() (io.Reader, func(), error)
	}
	sections := []section{
		{"header", bytesSection(hj)},
		{"keys", bytesSection(keys.Bytes())},
		{"staff", bytesSection(accounts.Bytes())},
		{"identities", bytesSection(ids)},
	}
	for _, st := range streams {
		sections = append(sections,
			section{"stream/" + st.name + "/info", bytesSection(st.info)},
			section{"stream/" + st.name + "/data", fileSection(st.file)})
	}
	for _, sec := range sections {
		r, done, err := sec.open()
		if err == nil {
			err = bw.Section(sec.name)
		}
		if err == nil {
			_, err = io.Copy(bw, r)
		}
		if done != nil {
			done()
		}
		if err != nil {
			return err
		}
	}
	if err := bw.Close(); err != nil {
		return err
	}
	s.cfg.Logger.Info("backup written", "backup", entry.ID, "keys", nkeys, "expires", entry.Expires)
	return nil
}

func bytesSection(b []byte) func() (io.Reader, func(), error) {
	return func() (io.Reader, func(), error) { return bytes.NewReader(b), nil, nil }
}

func fileSection(path string) func() (io.Reader, func(), error) {
	return func() (io.Reader, func(), error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return bufio.NewReaderSize(f, 256<<10), func() { f.Close() }, nil
	}
}

// putRecord appends fields, each with its length.
func putRecord(b *bytes.Buffer, fields ...[]byte) {
	for _, f := range fields {
		b.Write(binary.AppendUvarint(nil, uint64(len(f))))
		b.Write(f)
	}
}

// recordReader reads putRecord's records of n fields.
type recordReader struct {
	br *bufio.Reader
	n  int
}

// next returns the next record, or ok false at the end.
func (r recordReader) next() (fields [][]byte, ok bool, err error) {
	for i := range r.n {
		l, err := binary.ReadUvarint(r.br)
		if errors.Is(err, io.EOF) && i == 0 {
			return nil, false, nil
		}
		if err != nil || l > backup.MaxChunk {
			return nil, false, fmt.Errorf("%w: bad record", backup.ErrFormat)
		}
		f := make([]byte, l)
		if _, err := io.ReadFull(r.br, f); err != nil {
			return nil, false, fmt.Errorf("%w: record cut short", backup.ErrFormat)
		}
		fields = append(fields, f)
	}
	return fields, true, nil
}

// pruneBackupKeys destroys the backup keys whose retention ended, now and every hour.
func (s *Service) pruneBackupKeys(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := s.backups.Prune(s.cfgNow()); err != nil {
			s.cfg.Logger.Error("destroy expired backup keys", "err", err)
		} else if n > 0 {
			s.cfg.Logger.Info("destroyed expired backup keys: those backups can no longer be opened", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// snapshotStream writes a JetStream snapshot of stream to w through the JetStream API
// ($JS.API.STREAM.SNAPSHOT): the server sends chunks to an inbox, each acknowledged, and
// ends with an empty message whose status says whether all went well. It returns the
// API's answer (the stream's configuration and state, for the restore) and the stream's
// last sequence.
func snapshotStream(ctx context.Context, nc *nats.Conn, stream string, w io.Writer) ([]byte, uint64, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, 0, err
	}
	defer sub.Unsubscribe()
	req, _ := json.Marshal(map[string]any{"deliver_subject": inbox, "no_consumers": true, "chunk_size": 256 << 10})
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.SNAPSHOT."+stream, req)
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	var info struct {
		Config json.RawMessage `json:"config"`
		State  struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &info); err != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %w", stream, err)
	}
	if info.Error != nil {
		return nil, 0, fmt.Errorf("snapshot %s: %s", stream, info.Error.Description)
	}
	for {
		m, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("snapshot %s: %w", stream, err)
		}
		if len(m.Data) == 0 && m.Reply == "" {
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return nil, 0, fmt.Errorf("snapshot %s: %s %s", stream, st, m.Header.Get("Description"))
			}
			return resp.Data, info.State.LastSeq, nil
		}
		if _, err := w.Write(m.Data); err != nil {
			return nil, 0, err
		}
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return nil, 0, err
			}
		}
	}
}

// restoreStream makes stream from a snapshot through the JetStream API
// ($JS.API.STREAM.RESTORE): info is snapshotStream's answer, data the snapshot.
func restoreStream(ctx context.Context, nc *nats.Conn, stream string, info []byte, data io.Reader) error {
	var in struct {
		Config json.RawMessage `json:"config"`
		State  json.RawMessage `json:"state"`
	}
	if err := json.Unmarshal(info, &in); err != nil || in.Config == nil {
		return fmt.Errorf("restore %s: %w: bad stream information", stream, backup.ErrFormat)
	}
	req, _ := json.Marshal(in)
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.RESTORE."+stream, req)
	if err != nil {
		return fmt.Errorf("restore %s: %w", stream, err)
	}
	var r struct {
		DeliverSubject string `json:"deliver_subject"`
		Error          *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("restore %s: %w", stream, err)
	}
	if r.Error != nil {
		return fmt.Errorf("restore %s: %s", stream, r.Error.Description)
	}
	buf := make([]byte, 128<<10)
	for {
		n, rerr := io.ReadFull(data, buf)
		if n > 0 {
			ack, err := nc.RequestWithContext(ctx, r.DeliverSubject, buf[:n])
			if err != nil {
				return fmt.Errorf("restore %s: %w", stream, err)
			}
			if len(ack.Data) > 0 {
				return fmt.Errorf("restore %s: %s", stream, apiError(ack.Data))
			}
		}
		if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
			break
		}
		if rerr != nil {
			return rerr
		}
	}
	done, err := nc.RequestWithContext(ctx, r.DeliverSubject, nil)
	if err != nil {
		return fmt.Errorf("restore %s: %w", stream, err)
	}
	if msg := apiError(done.Data); msg != "" {
		return fmt.Errorf("restore %s: %s", stream, msg)
	}
	return nil
}

// apiError is the description of a JetStream API error answer, or "".
func apiError(data []byte) string {
	var r struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if json.Unmarshal(data, &r) != nil {
		return string(data)
	}
	if r.Error == nil {
		return ""
	}
	return r.Error.Description
}
