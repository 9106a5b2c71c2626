// Package backup is Lethe's backup file: what a backup holds, how it is sealed, and the
// keyring whose expiry makes it unreadable when its retention ends.
//
// A backup file is a plaintext header line, which names no patron and holds no key, then
// an age payload (X25519, to the backup's own key in the keyring) of sections:
//
//	"LETHE-BACKUP 1\n" header JSON "\n" age(sections)
//	section  = uvarint(len(name)) name chunk* uvarint(0)
//	chunk    = uvarint(len(data)) data          (1 ≤ len ≤ MaxChunk)
//
// The last section is named "end": a file cut short fails to read instead of restoring
// part of a library.
package backup

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"
)

const (
	magic = "LETHE-BACKUP 1\n"
	// MaxChunk bounds one chunk of a section.
	MaxChunk = 1 << 20
	// maxHeader bounds the header line; maxName a section's name.
	maxHeader = 4 << 10
	maxName   = 64
	endName   = "end"
)

// Header is the plaintext first line: enough to find the backup's key and say what the
// backup is, nothing that identifies anyone.
type Header struct {
	ID      string            `json:"id"` // the key's ID in the keyring
	Created time.Time         `json:"created"`
	Expires time.Time         `json:"expires"` // when the key is destroyed
	Streams map[string]uint64 `json:"streams"` // last sequence of each stream
	Keys    int               `json:"keys"`    // live keys in it
}

// ErrFormat says a file is not a Lethe backup, or is damaged or cut short.
var ErrFormat = errors.New("not a Lethe backup, or damaged")

// Writer writes a backup's sections.
type Writer struct {
	enc     io.WriteCloser
	bw      *bufio.Writer
	inSect  bool
	scratch [binary.MaxVarintLen64]byte
}

// NewWriter writes h and starts the sealed payload, to r.
func NewWriter(w io.Writer, h Header, r age.Recipient) (*Writer, error) {
	line, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(w, magic); err != nil {
		return nil, err
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return nil, err
	}
	enc, err := age.Encrypt(w, r)
	if err != nil {
		return nil, err
	}
	return &Writer{enc: enc, bw: bufio.NewWriterSize(enc, 64<<10)}, nil
}

func (w *Writer) uvarint(n uint64) error {
	_, err := w.bw.Write(binary.AppendUvarint(w.scratch[:0], n))
	return err
}

// Section starts a section; what is written until the next Section or Close is its
// content.
func (w *Writer) Section(name string) error {
	if len(name) == 0 || len(name) > maxName {
		return fmt.Errorf("section name %q", name)
	}
	if err := w.endSection(); err != nil {
		return err
	}
	if err := w.uvarint(uint64(len(name))); err != nil {
		return err
	}
	if _, err := w.bw.WriteString(name); err != nil {
		return err
	}
	w.inSect = true
	return nil
}

func (w *Writer) endSection() error {
	if !w.inSect {
		return nil
	}
	w.inSect = false
	return w.uvarint(0)
}

// Write adds p to the current section.
func (w *Writer) Write(p []byte) (int, error) {
	if !w.inSect {
		return 0, errors.New("backup: write outside a section")
	}
	n := 0
	for len(p) > 0 {
		c := p[:min(len(p), MaxChunk)]
		if err := w.uvarint(uint64(len(c))); err != nil {
			return n, err
		}
		if _, err := w.bw.Write(c); err != nil {
			return n, err
		}
		n += len(c)
		p = p[len(c):]
	}
	return n, nil
}

// Close writes the end section and finishes the payload. It does not close the
// underlying writer.
func (w *Writer) Close() error {
	if err := w.Section(endName); err != nil {
		return err
	}
	if err := w.endSection(); err != nil {
		return err
	}
	if err := w.bw.Flush(); err != nil {
		return err
	}
	return w.enc.Close()
}

// ReadHeader reads the plaintext header, leaving br at the payload.
func ReadHeader(br *bufio.Reader) (Header, error) {
	var h Header
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(br, m); err != nil || string(m) != magic {
		return h, fmt.Errorf("%w: no backup header", ErrFormat)
	}
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxHeader {
			return h, fmt.Errorf("%w: header too long", ErrFormat)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return h, fmt.Errorf("%w: header cut short", ErrFormat)
		}
	}
	if err := json.Unmarshal(bytes.TrimSuffix(line, []byte("\n")), &h); err != nil || h.ID == "" || len(h.ID) > 64 {
		return h, fmt.Errorf("%w: bad header", ErrFormat)
	}
	return h, nil
}

// Reader reads a backup's sections.
type Reader struct {
	br   *bufio.Reader
	sect *sectionReader
	done bool
}

// NewReader opens the payload that follows the header in br with ident.
func NewReader(br *bufio.Reader, ident age.Identity) (*Reader, error) {
	dec, err := age.Decrypt(br, ident)
	if err != nil {
		return nil, fmt.Errorf("open the backup with its key: %w", err)
	}
	return newPlainReader(dec), nil
}

// newPlainReader reads sections from what the payload decrypts to.
func newPlainReader(r io.Reader) *Reader { return &Reader{br: bufio.NewReaderSize(r, 64<<10)} }

// Next returns the next section's name and content, which is valid until the next call.
// After the end section it returns io.EOF; a payload that ends before it is ErrFormat.
func (r *Reader) Next() (string, io.Reader, error) {
	if r.done {
		return "", nil, io.EOF
	}
	if r.sect != nil {
		// Skip what the caller did not read of the previous section.
		if _, err := io.Copy(io.Discard, r.sect); err != nil {
			return "", nil, err
		}
	}
	n, err := binary.ReadUvarint(r.br)
	if err != nil {
		return "", nil, fmt.Errorf("%w: cut short before its end", ErrFormat)
	}
	if n == 0 || n > maxName {
		return "", nil, fmt.Errorf("%w: bad section name", ErrFormat)
	}
	name := make([]byte, n)
	if _, err := io.ReadFull(r.br, name); err != nil {
		return "", nil, fmt.Errorf("%w: cut short", ErrFormat)
	}
	r.sect = &sectionReader{br: r.br}
	if string(name) == endName {
		if _, err := io.Copy(io.Discard, r.sect); err != nil {
			return "", nil, err
		}
		r.done = true
		return "", nil, io.EOF
	}
	return string(name), r.sect, nil
}

type sectionReader struct {
	br   *bufio.Reader
	left uint64 // of the current chunk
	done bool
}

func (s *sectionReader) Read(p []byte) (int, error) {
	for s.left == 0 {
		if s.done {
			return 0, io.EOF
		}
		n, err := binary.ReadUvarint(s.br)
		if err != nil {
			return 0, fmt.Errorf("%w: cut short", ErrFormat)
		}
		if n > MaxChunk {
			return 0, fmt.Errorf("%w: chunk too large", ErrFormat)
		}
		if n == 0 {
			s.done = true
			return 0, io.EOF
		}
		s.left = n
	}
	p = p[:min(uint64(len(p)), s.left)]
	n, err := s.br.Read(p)
	s.left -= uint64(n)
	if errors.Is(err, io.EOF) {
		if s.left > 0 || n == 0 {
			return n, fmt.Errorf("%w: cut short", ErrFormat)
		}
		err = nil
	}
	return n, err
}
