package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"sort"
	"unicode/utf8"

	"github.com/singlora/singlora/internal/atomicfile"
)

// Writer streams a safetensors file to disk. The header — every tensor's name, dtype and shape, in
// buffer order — is given to Create; the tensors' bytes then follow through Write, in that order
// and in pieces of any size (a piece may end inside a tensor or span several), so that the caller
// never needs a whole tensor in memory, let alone the file. The file is written as Write writes it:
// to a temporary sibling that Close checks (every check Open makes), syncs and renames to path.
// Until Close succeeds path is left as it was, and after an error or Abort no temporary remains.
// The bytes written are those Marshal would return for the same tensors and metadata.
type Writer struct {
	path, tmp string
	f         *os.File
	buf       *bufio.Writer
	names     []string
	sizes     []uint64 // each tensor's byte size
	cur       int      // the tensor the next byte belongs to
	left      uint64   // bytes still owed to tensor cur
	written   uint64
	err       error // the first error; the Writer is then unusable
}

// Create checks the header (names unique, non-empty, valid UTF-8 and not MetadataKey; known dtypes;
// non-negative dimensions), creates a temporary file beside path and writes the header into it.
// The tensors' Data must be nil: their bytes come through Write. path's folder must exist.
func Create(path string, tensors []Tensor, metadata map[string]string) (*Writer, error) {
	hdr, sizes, err := header(tensors, metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := CheckOutputPath(path); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), atomicfile.TempPrefix(filepath.Base(path))+"*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %v", path, pathErr(err))
	}
	w := &Writer{path: path, tmp: f.Name(), f: f, buf: bufio.NewWriterSize(f, 1<<20), sizes: sizes}
	for _, t := range tensors {
		w.names = append(w.names, t.Name)
	}
	if _, err := w.buf.Write(hdr); err != nil {
		return nil, w.fail(err)
	}
	w.advance()
	return w, nil
}

// header encodes the JSON header of tensors (Data nil) and metadata with its 8-byte length, as
// Marshal does, and returns each tensor's byte size.
func header(tensors []Tensor, metadata map[string]string) ([]byte, []uint64, error) {
	var hdr bytes.Buffer
	hdr.WriteByte('{')
	if metadata != nil {
		keys := make([]string, 0, len(metadata))
		for k, v := range metadata {
			if !utf8.ValidString(k) || !utf8.ValidString(v) {
				return nil, nil, fmt.Errorf("safetensors: metadata %q is not valid UTF-8", k)
			}
			keys = append(keys, k)
		}
		sort.Strings(keys)
		hdr.WriteString(`"` + MetadataKey + `":{`)
		for i, k := range keys {
			if i > 0 {
				hdr.WriteByte(',')
			}
			writeJSONString(&hdr, k)
			hdr.WriteByte(':')
			writeJSONString(&hdr, metadata[k])
		}
		hdr.WriteByte('}')
	}
	sizes := make([]uint64, len(tensors))
	seen := map[string]bool{}
	var offset uint64
	for i := range tensors {
		t := &tensors[i]
		n, err := t.byteSize()
		if err != nil {
			return nil, nil, err
		}
		if seen[t.Name] {
			return nil, nil, fmt.Errorf("safetensors: duplicate tensor name %q", t.Name)
		}
		seen[t.Name] = true
		if metadata != nil || i > 0 {
			hdr.WriteByte(',')
		}
		writeJSONString(&hdr, t.Name)
		fmt.Fprintf(&hdr, `:{"dtype":"%s","shape":[`, t.DType)
		for j, d := range t.Shape {
			if j > 0 {
				hdr.WriteByte(',')
			}
			fmt.Fprintf(&hdr, "%d", d)
		}
		fmt.Fprintf(&hdr, `],"data_offsets":[%d,%d]}`, offset, offset+n)
		sizes[i], offset = n, offset+n
	}
	hdr.WriteByte('}')
	for hdr.Len()%8 != 0 {
		hdr.WriteByte(' ')
	}
	if hdr.Len() > MaxHeaderSize {
		return nil, nil, fmt.Errorf("safetensors: header of %d bytes exceeds the %d-byte limit", hdr.Len(), MaxHeaderSize)
	}
	out := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+hdr.Len()), uint64(hdr.Len()))
	return append(out, hdr.Bytes()...), sizes, nil
}

// byteSize checks a header-only tensor (Data nil) as Marshal checks a tensor and returns the
// size of its data.
func (t *Tensor) byteSize() (uint64, error) {
	switch {
	case t.Name == "":
		return 0, errors.New("safetensors: tensor with an empty name")
	case t.Name == MetadataKey:
		return 0, fmt.Errorf("safetensors: tensor name %q is reserved", MetadataKey)
	case !utf8.ValidString(t.Name):
		return 0, fmt.Errorf("safetensors: tensor name %q is not valid UTF-8", t.Name)
	case t.Data != nil:
		return 0, fmt.Errorf("safetensors: tensor %q: Create takes the header only (Data nil); write the bytes with Write", t.Name)
	}
	size, ok := dtypeSizes[t.DType]
	if !ok {
		return 0, fmt.Errorf("safetensors: tensor %q: unknown dtype %q", t.Name, t.DType)
	}
	n := uint64(size)
	for _, d := range t.Shape {
		if d < 0 {
			return 0, fmt.Errorf("safetensors: tensor %q: negative dimension in shape %v", t.Name, t.Shape)
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 {
			return 0, fmt.Errorf("safetensors: tensor %q: shape %v overflows", t.Name, t.Shape)
		}
		n = lo
	}
	return n, nil
}

// advance makes cur the first tensor from cur on that still has bytes to come (skipping empty
// ones) and left its size.
func (w *Writer) advance() {
	for w.cur < len(w.sizes) && w.sizes[w.cur] == 0 {
		w.cur++
	}
	if w.cur < len(w.sizes) {
		w.left = w.sizes[w.cur]
	}
}

// Write appends p to the data buffer: the next bytes of the current tensor, then of the ones after
// it. Writing more bytes than the header declares is an error.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	done := 0
	for len(p) > 0 {
		if w.cur >= len(w.sizes) {
			return done, w.fail(fmt.Errorf("%d bytes beyond the %d the header declares", len(p), w.total()))
		}
		n := int(min(w.left, uint64(len(p))))
		if _, err := w.buf.Write(p[:n]); err != nil {
			return done, w.fail(err)
		}
		p, done, w.left, w.written = p[n:], done+n, w.left-uint64(n), w.written+uint64(n)
		if w.left == 0 {
			w.cur++
			w.advance()
		}
	}
	return done, nil
}

// total is the size of the data buffer the header declares.
func (w *Writer) total() uint64 {
	var n uint64
	for _, s := range w.sizes {
		n += s
	}
	return n
}

// Close checks that every tensor's bytes were written, syncs the file, checks it as Open does and
// renames it to path.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.cur < len(w.sizes) {
		return w.fail(fmt.Errorf("tensor %q: only %d of its %d bytes were written (%d of %d in all)",
			w.names[w.cur], w.sizes[w.cur]-w.left, w.sizes[w.cur], w.written, w.total()))
	}
	if err := w.buf.Flush(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Chmod(0o644); err != nil {
		return w.fail(err)
	}
	if err := w.f.Sync(); err != nil {
		return w.fail(err)
	}
	if err := w.f.Close(); err != nil {
		return w.fail(err)
	}
	r, err := Open(w.tmp)
	if err != nil {
		return w.fail(fmt.Errorf("the written file does not check: %w", err))
	}
	_ = r.Close()
	if err := atomicfile.Rename(w.tmp, w.path); err != nil {
		return w.fail(err)
	}
	atomicfile.SyncDir(filepath.Dir(w.path))
	w.err = fmt.Errorf("writing %s: already closed", w.path)
	return nil
}

// Abort discards the file: path is left as it was and the temporary file removed.
func (w *Writer) Abort() {
	if w.err == nil {
		_ = w.fail(errors.New("aborted"))
	}
}

// fail records err (naming path), closes and removes the temporary file, and returns the error.
func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = fmt.Errorf("writing %s: %v", w.path, pathErr(err))
		_ = w.f.Close()
		_ = os.Remove(w.tmp)
	}
	return w.err
}
