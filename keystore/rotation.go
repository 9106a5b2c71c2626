package keystore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Step names a point in a rotation of a master key file (RotateFile), after the step of
// that name is on disk. The package comment lists what is on disk after each step and
// what the next OpenFile does about it.
type Step string

// The steps of RotateFile, in order.
const (
	// StepJournal: the journal (<file>.rotation) names the old and the new key's IDs
	// and where the new key goes. Nothing else has changed.
	StepJournal Step = "journal"
	// StepNewKeyTemp: the new key is complete and synced in <new file>.tmp.
	StepNewKeyTemp Step = "new-key-temp"
	// StepNewKey: the new key file exists, complete and synced; every key in the store
	// is still wrapped under the old master key.
	StepNewKey Step = "new-key"
	// StepRewrapped: every key in the store is wrapped under the new master key (one
	// synced batch); old wrapped values may still be in the store's files.
	StepRewrapped Step = "rewrapped"
	// StepErased: no file of the store holds a value wrapped under the old key.
	StepErased Step = "erased"
	// StepOldZeroed: the old key file is overwritten with zeros and synced.
	StepOldZeroed Step = "old-zeroed"
	// StepOldRemoved: the old key file is gone (directory synced).
	StepOldRemoved Step = "old-removed"
	// StepInstalled: in place only: <file>.next is renamed to <file>.
	StepInstalled Step = "installed"
	// StepDone: the journal is gone; the rotation is complete.
	StepDone Step = "done"
)

// RotationSteps returns the steps of a rotation in place, in order. A rotation to a file
// of its own (FileRotation.NewPath) has every step but StepInstalled.
func RotationSteps() []Step {
	return []Step{StepJournal, StepNewKeyTemp, StepNewKey, StepRewrapped, StepErased,
		StepOldZeroed, StepOldRemoved, StepInstalled, StepDone}
}

// What a rotation keeps beside the master key file <file>: the journal, the new key of a
// rotation in place, and the temporary file each key file is written through.
const (
	journalSuffix = ".rotation"
	nextSuffix    = ".next"
	tempSuffix    = ".tmp"
)

// How OpenFile dealt with a rotation that a crash interrupted (KeyFile.Interrupted).
const (
	// RotationFinished: the store was already under the new key; the rotation was
	// completed, and the old master key is destroyed.
	RotationFinished = "finished"
	// RotationUndone: the store was still under the old key; the new key was
	// destroyed, and the old key file stays in use.
	RotationUndone = "undone"
)

// journal is the content of <file>.rotation: which rotation is under way. It holds key
// IDs and a path, never a key.
type journal struct {
	Version int    `json:"version"`
	Old     string `json:"old"` // ID of the master key being replaced
	New     string `json:"new"` // ID of the new master key
	// NewFile is the absolute path of the new key's own file (FileRotation.NewPath);
	// empty for a rotation in place, whose new key is <file>.next until installed.
	NewFile string `json:"new_file,omitempty"`
}

const journalVersion = 1

// KeyFile is the master key file that opened a store.
type KeyFile struct {
	Path   string    // the file that holds Master
	Master MasterKey // the key in it, which opens the store
	// Interrupted is what OpenFile did about an interrupted rotation: "" if there
	// was none, RotationFinished or RotationUndone.
	Interrupted string
	// Destroyed is the ID of the master key a finished rotation destroyed, when the
	// journal recorded it.
	Destroyed string
}

// FileRotation says where RotateFile puts the new master key.
type FileRotation struct {
	// NewPath is a file of its own for the new master key, which must not exist yet;
	// the old key file is destroyed. Empty: in place, the new key replaces the old one
	// under the same name (written to <file>.next first).
	NewPath string
	// Step, if not nil, is called after each step is on disk. An error stops the
	// rotation there and is returned, leaving the files as a crash at that point
	// would; the next OpenFile finishes or undoes it. It exists for tests, which use
	// it to stop a rotation, or kill the process, at each step.
	Step func(Step) error
	// Also, if not nil, is called once the new key is on disk and before anything is
	// re-wrapped under it, with the old key and the new one and the file the new one
	// will be in: what else the master key seals (the backup keyring) is sealed under
	// both there, so that whichever key a crash leaves opens it. An error stops the
	// rotation as Step's does.
	Also func(old, next MasterKey, nextPath string) error
}

func noStep(Step) error { return nil }

// RotationPending reports whether the files beside the master key file at path say that
// a rotation was interrupted: a journal, or a new key of a rotation in place
// (<path>.next, possibly left by an earlier version of Lethe, or <path>.next.tmp). The key
// at path cannot be trusted to open the store until OpenFile has finished or undone it.
func RotationPending(path string) bool {
	for _, p := range []string{path + journalSuffix, path + nextSuffix, path + nextSuffix + tempSuffix} {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			return true
		}
	}
	return false
}

// OpenFile opens the store in dir with the master key in the file at path. If a
// rotation of that file was interrupted, OpenFile first finishes it (the store is
// already under the new key: the old values are erased, the old key file destroyed, the
// new one installed) or undoes it (the store is still under the old key: the new key is
// destroyed), whichever the store says, and reports which in KeyFile.Interrupted. Every
// state a crash can leave is one or the other; the package comment lists them. The store
// is open (and so locked against other processes) before any file is changed.
//
// After a rotation to a file of its own was finished, KeyFile.Path is that file: give it
// as the master key file from then on.
func OpenFile(ctx context.Context, dir, path string, logger *slog.Logger) (*Store, KeyFile, error) {
	s, kf, err := openFile(ctx, dir, path, logger)
	if err != nil {
		return nil, KeyFile{}, fmt.Errorf("open keystore: %w", err)
	}
	return s, kf, nil
}

func openFile(ctx context.Context, dir, path string, logger *slog.Logger) (*Store, KeyFile, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	j, err := readJournal(path + journalSuffix)
	if err != nil {
		return nil, KeyFile{}, err
	}
	next, inPlace := path+nextSuffix, true
	if j != nil && j.NewFile != "" {
		next, inPlace = j.NewFile, false
	}
	if j == nil && !RotationPending(path) {
		m, err := LoadMaster(path, "")
		if err != nil {
			return nil, KeyFile{}, err
		}
		s, err := Open(dir, m, logger)
		if err != nil {
			return nil, KeyFile{}, err
		}
		return s, KeyFile{Path: path, Master: m}, nil
	}
	// Pebble would make an empty store where none is, which the new key would then
	// "open": never decide a rotation against a store that is not there.
	if !storeExists(dir) {
		return nil, KeyFile{}, fmt.Errorf("interrupted master key rotation, but no keystore in %s: leave the key files as they are until it is back", dir)
	}
	r := &recovery{dir: dir, path: path, next: next, inPlace: inPlace, j: j, logger: logger}
	return r.run(ctx)
}

// storeExists reports whether dir holds a Pebble database (a MANIFEST).
func storeExists(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "MANIFEST-") {
			return true
		}
	}
	return false
}

// recovery finishes or undoes one interrupted rotation.
type recovery struct {
	dir, path, next string
	inPlace         bool
	j               *journal // nil: a <path>.next without a journal, from an earlier version
	logger          *slog.Logger
}

func (r *recovery) run(ctx context.Context) (*Store, KeyFile, error) {
	nextKey, nextErr := loadMasterFile(r.next)
	pathKey, pathErr := loadMasterFile(r.path)
	if nextErr == nil && (r.j == nil || nextKey.ID == r.j.New) {
		s, err := r.open(nextKey)
		if err == nil {
			kf, err := r.finish(ctx, s, nextKey, r.next)
			if err != nil {
				s.Close()
				return nil, KeyFile{}, err
			}
			return s, kf, nil
		}
		if !errors.Is(err, ErrWrongMaster) {
			return nil, KeyFile{}, err
		}
	}
	if pathErr == nil {
		s, err := r.open(pathKey)
		if err == nil {
			var kf KeyFile
			if r.j != nil && pathKey.ID == r.j.New {
				// In place, after StepInstalled: only the journal is left to remove.
				kf, err = r.finish(ctx, s, pathKey, r.path)
			} else {
				kf, err = r.undo(pathKey)
			}
			if err != nil {
				s.Close()
				return nil, KeyFile{}, err
			}
			return s, kf, nil
		}
		if !errors.Is(err, ErrWrongMaster) {
			return nil, KeyFile{}, err
		}
	}
	return nil, KeyFile{}, fmt.Errorf("interrupted master key rotation: neither %s nor %s holds the key the store is wrapped under (%v; %v): %w",
		r.path, r.next, pathErr, nextErr, ErrWrongMaster)
}

func (r *recovery) open(m MasterKey) (*Store, error) { return Open(r.dir, m, r.logger) }

// finish completes a rotation whose re-wrap committed: s is open under newKey, read from
// the file keyAt (r.next, or r.path once installed). It does what RotateFile does after
// StepRewrapped, skipping what is done.
func (r *recovery) finish(ctx context.Context, s *Store, newKey MasterKey, keyAt string) (KeyFile, error) {
	// The first Sweep after Open always runs: it erases the old wrapped values.
	if err := s.Sweep(ctx); err != nil {
		return KeyFile{}, err
	}
	if err := clearTemp(r.next+tempSuffix, r.next); err != nil {
		return KeyFile{}, err
	}
	active := r.next
	if r.inPlace {
		active = r.path
	}
	if keyAt == r.next {
		// The old key file: the old key, zeros from an interrupted destroy, or gone.
		id, exists, err := keyFileID(r.path)
		switch {
		case err != nil:
			return KeyFile{}, err
		case !exists:
		case id != "" && r.j != nil && id != r.j.Old:
			return KeyFile{}, fmt.Errorf("interrupted master key rotation: %s holds master key %s, which is not the old key the journal names; move it away and open again", r.path, id)
		default:
			if err := destroyMasterFile(r.path); err != nil {
				return KeyFile{}, fmt.Errorf("destroy old master key: %w", err)
			}
		}
		if r.inPlace {
			if err := os.Rename(r.next, r.path); err != nil {
				return KeyFile{}, fmt.Errorf("install new master key: %w", err)
			}
			if err := syncDir(filepath.Dir(r.path)); err != nil {
				return KeyFile{}, err
			}
		}
	}
	if err := r.removeJournal(); err != nil {
		return KeyFile{}, err
	}
	kf := KeyFile{Path: active, Master: newKey, Interrupted: RotationFinished}
	if r.j != nil {
		kf.Destroyed = r.j.Old
	}
	r.logger.Warn("finished an interrupted master key rotation", slog.String("master", newKey.ID), slog.String("file", active))
	return kf, nil
}

// undo rolls back a rotation whose re-wrap never committed: the store is under oldKey, so
// the new key wrapped nothing and is destroyed.
func (r *recovery) undo(oldKey MasterKey) (KeyFile, error) {
	if err := clearTemp(r.next+tempSuffix, r.next); err != nil {
		return KeyFile{}, err
	}
	id, exists, err := keyFileID(r.next)
	switch {
	case err != nil:
		return KeyFile{}, err
	case !exists:
	case r.j != nil && id != r.j.New:
		return KeyFile{}, fmt.Errorf("interrupted master key rotation: %s is not the new key this rotation wrote; move it away and open again", r.next)
	default:
		// In place, <path>.next is Lethe's name; with a journal, its ID is the new key's.
		if err := destroyMasterFile(r.next); err != nil {
			return KeyFile{}, fmt.Errorf("destroy unused new master key: %w", err)
		}
	}
	if err := r.removeJournal(); err != nil {
		return KeyFile{}, err
	}
	r.logger.Warn("undid an interrupted master key rotation; the old master key stays in use", slog.String("master", oldKey.ID))
	return KeyFile{Path: r.path, Master: oldKey, Interrupted: RotationUndone}, nil
}

// keyFileID reads the master key file at path whatever its mode, and returns the ID of
// the key in it, or "" if it holds none (zeros from an interrupted destroy).
func keyFileID(path string) (id string, exists bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	m, err := ParseMaster(string(data))
	if err != nil {
		return "", true, nil
	}
	return m.ID, true, nil
}

func (r *recovery) removeJournal() error {
	jpath := r.path + journalSuffix
	if err := os.Remove(jpath + tempSuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.Remove(jpath); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	return syncDir(filepath.Dir(jpath))
}

// RotateFile rotates the master key of the store, opened with kf (from OpenFile), as one
// crash-safe sequence of steps (see Step): it writes a journal, writes a fresh key to a
// new file, re-wraps every key under it (Rotate), erases the old wrapped values, destroys
// the old key file and, in place, renames the new one to the old one's name. When it
// returns nil, the returned KeyFile holds the only key that opens the store and the old
// key exists nowhere. When it fails, or the process dies, at any point, the next OpenFile
// of the same file finishes or undoes the rotation; no key is lost either way.
func (s *Store) RotateFile(ctx context.Context, kf KeyFile, r FileRotation) (KeyFile, error) {
	nkf, err := s.rotateFile(ctx, kf, r)
	if err != nil {
		return KeyFile{}, fmt.Errorf("rotate master key file: %w", err)
	}
	return nkf, nil
}

func (s *Store) rotateFile(ctx context.Context, kf KeyFile, r FileRotation) (KeyFile, error) {
	step := r.Step
	if step == nil {
		step = noStep
	}
	if err := s.rlock(); err != nil {
		return KeyFile{}, err
	}
	current := s.m.key.ID
	s.mu.RUnlock()
	if !kf.Master.valid() || kf.Master.ID != current {
		return KeyFile{}, errors.New("the store is not open with the key of this key file")
	}
	path := kf.Path
	jpath := path + journalSuffix
	if RotationPending(path) {
		return KeyFile{}, fmt.Errorf("an interrupted rotation of %s is pending: open the store with OpenFile, which finishes or undoes it", path)
	}
	next, inPlace := path+nextSuffix, true
	if r.NewPath != "" {
		abs, err := filepath.Abs(r.NewPath)
		if err != nil {
			return KeyFile{}, err
		}
		if absPath, err := filepath.Abs(path); err == nil && absPath == abs {
			return KeyFile{}, errors.New("the new master key file is the current one; leave the new path out to rotate in place")
		}
		next, inPlace = abs, false
	}
	if _, err := os.Lstat(next); err == nil {
		return KeyFile{}, fmt.Errorf("%s: %w", next, fs.ErrExist)
	}
	fresh := randomMaster()
	j := journal{Version: journalVersion, Old: kf.Master.ID, New: fresh.ID}
	if !inPlace {
		j.NewFile = next
	}
	if err := writeJournal(jpath, j); err != nil {
		return KeyFile{}, fmt.Errorf("write journal: %w", err)
	}
	if err := step(StepJournal); err != nil {
		return KeyFile{}, err
	}
	if err := writeMasterFile(next, fresh, step); err != nil {
		return KeyFile{}, fmt.Errorf("new master key: %w", err)
	}
	if err := step(StepNewKey); err != nil {
		return KeyFile{}, err
	}
	if r.Also != nil {
		final := path
		if !inPlace {
			final = next
		}
		if err := r.Also(kf.Master, fresh, final); err != nil {
			return KeyFile{}, err
		}
	}
	if err := s.rotateSteps(ctx, fresh, step); err != nil {
		return KeyFile{}, err
	}
	if err := zeroFile(path); err != nil {
		return KeyFile{}, fmt.Errorf("destroy old master key: %w", err)
	}
	if err := step(StepOldZeroed); err != nil {
		return KeyFile{}, err
	}
	if err := removeSynced(path); err != nil {
		return KeyFile{}, fmt.Errorf("destroy old master key: %w", err)
	}
	if err := step(StepOldRemoved); err != nil {
		return KeyFile{}, err
	}
	active := next
	if inPlace {
		if err := os.Rename(next, path); err != nil {
			return KeyFile{}, fmt.Errorf("install new master key: %w", err)
		}
		if err := syncDir(filepath.Dir(path)); err != nil {
			return KeyFile{}, err
		}
		if err := step(StepInstalled); err != nil {
			return KeyFile{}, err
		}
		active = path
	}
	if err := removeSynced(jpath); err != nil {
		return KeyFile{}, fmt.Errorf("remove journal: %w", err)
	}
	if err := step(StepDone); err != nil {
		return KeyFile{}, err
	}
	return KeyFile{Path: active, Master: fresh}, nil
}

// rotateSteps is Rotate with a step after the re-wrap and after the erasure.
func (s *Store) rotateSteps(ctx context.Context, next MasterKey, step func(Step) error) error {
	if s.remote != nil {
		return ErrClusterNode
	}
	nm, err := newMaster(next)
	if err != nil {
		return err
	}
	s.sweepMu.Lock()
	defer s.sweepMu.Unlock()
	if err := s.rewrap(nm); err != nil {
		return fmt.Errorf("re-wrap: %w", err)
	}
	if err := step(StepRewrapped); err != nil {
		return err
	}
	if err := s.rlock(); err != nil {
		return err
	}
	err = s.erase(ctx)
	s.mu.RUnlock()
	if err != nil {
		return fmt.Errorf("keys re-wrapped, but old values not yet erased: %w", err)
	}
	return step(StepErased)
}

// writeJournal writes j to jpath atomically: a temporary file, synced, renamed, and the
// directory synced.
func writeJournal(jpath string, j journal) error {
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	tmp := jpath + tempSuffix
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, jpath)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(jpath))
}

// readJournal returns the journal at jpath, or nil if there is none.
func readJournal(jpath string) (*journal, error) {
	data, err := os.ReadFile(jpath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read rotation journal: %w", err)
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil || j.Version != journalVersion || j.Old == "" || j.New == "" {
		return nil, fmt.Errorf("rotation journal %s is not one this version wrote; leave it and the key files as they are and ask for help", jpath)
	}
	return &j, nil
}
