// Package atomicfile replaces a small file whole: a reader, or a start after a crash,
// finds the old content or the new, never a mix, and once Write returns the new content
// and its name survive a power loss.
package atomicfile

import (
	"os"
	"path/filepath"
)

// Write replaces path with data: it writes a temporary file beside it (mode 0600, as
// os.CreateTemp makes it), syncs it, renames it over path and syncs the directory. An
// error before the rename leaves path as it was and removes the temporary file; one from
// the directory's sync comes after path holds data, which a power loss may undo.
func Write(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
