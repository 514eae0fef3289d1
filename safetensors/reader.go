package safetensors

import (
	"fmt"
	"io"
	"os"
)

// Reader is an open safetensors file whose header has been read and checked (every check Parse
// makes) but whose tensor data stays on disk until asked for: a loader can then copy one tensor at
// a time straight into its destination, holding no second copy of the file in memory.
type Reader struct {
	// File lists the tensors (their Data is nil) and the metadata.
	*File
	path  string
	f     *os.File
	start uint64         // file offset of the data buffer
	offs  map[string]int // tensor name → index in File.Tensors
	span  [][2]uint64    // each tensor's [begin, end) in the buffer
}

// Open opens the safetensors file at path and reads and checks its header. Close it when done.
func Open(path string) (*Reader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	r, err := open(path, f)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	return r, nil
}

func open(path string, f *os.File) (*Reader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.IsDir() {
		return nil, fmt.Errorf("%s: is a folder, not a safetensors file", path)
	}
	size := uint64(st.Size())
	head := make([]byte, min(size, 512))
	if _, err := f.ReadAt(head, 0); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n, err := headerLength(head, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if uint64(len(head)) < 8+n {
		head = make([]byte, 8+n)
		if _, err := f.ReadAt(head, 0); err != nil {
			return nil, fmt.Errorf("%s: reading the header: %w", path, err)
		}
	}
	file, span, start, err := parse(head[:8+n], size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	r := &Reader{File: file, path: path, f: f, start: start, offs: map[string]int{}, span: span}
	for i, t := range file.Tensors {
		r.offs[t.Name] = i
	}
	return r, nil
}

// Path is the file's path.
func (r *Reader) Path() string { return r.path }

// Lookup returns the tensor called name (its Data nil), or nil.
func (r *Reader) Lookup(name string) *Tensor {
	i, ok := r.offs[name]
	if !ok {
		return nil
	}
	return &r.File.Tensors[i]
}

// ByteSize returns the number of bytes of tensor name's data (0, false if there is no such tensor).
func (r *Reader) ByteSize(name string) (int, bool) {
	i, ok := r.offs[name]
	if !ok {
		return 0, false
	}
	return int(r.span[i][1] - r.span[i][0]), true
}

// ReadData reads tensor name's bytes into dst, which must be exactly its size
// (Tensor.NumElements × the dtype's size).
func (r *Reader) ReadData(name string, dst []byte) error {
	i, ok := r.offs[name]
	if !ok {
		return fmt.Errorf("%s: no tensor %q", r.path, name)
	}
	sp := r.span[i]
	if uint64(len(dst)) != sp[1]-sp[0] {
		return fmt.Errorf("%s: tensor %q has %d bytes, %d given", r.path, name, sp[1]-sp[0], len(dst))
	}
	if _, err := r.f.ReadAt(dst, int64(r.start+sp[0])); err != nil {
		return fmt.Errorf("%s: reading tensor %q: %w", r.path, name, err)
	}
	return nil
}

// Tensor reads tensor name with its data (a new buffer).
func (r *Reader) Tensor(name string) (*Tensor, error) {
	t := r.Lookup(name)
	if t == nil {
		return nil, fmt.Errorf("%s: no tensor %q", r.path, name)
	}
	n, _ := r.ByteSize(name)
	out := *t
	out.Shape = copyShape(t.Shape)
	out.Data = make([]byte, n)
	if err := r.ReadData(name, out.Data); err != nil {
		return nil, err
	}
	return &out, nil
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }
