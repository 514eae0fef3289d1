package gguf

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"

	"github.com/singlora/singlora/internal/atomicfile"
	"github.com/singlora/singlora/safetensors"
)

// header encodes everything before the tensor data (padding included) and returns each tensor's
// offset in the data section.
func header(kvs []KV, infos []TensorInfo) ([]byte, []uint64, error) {
	if err := checkKVs(kvs); err != nil {
		return nil, nil, err
	}
	if err := checkInfos(infos); err != nil {
		return nil, nil, err
	}
	align, _ := alignmentOf(kvs)
	var b bytes.Buffer
	b.WriteString(Magic)
	le := binary.LittleEndian
	b.Write(le.AppendUint32(nil, Version))
	b.Write(le.AppendUint64(nil, uint64(len(infos))))
	b.Write(le.AppendUint64(nil, uint64(len(kvs))))
	for _, kv := range kvs {
		writeString(&b, kv.Key)
		t, _, _, _ := valueType(kv.Value)
		b.Write(le.AppendUint32(nil, uint32(t)))
		writeValue(&b, kv.Value)
	}
	offsets := make([]uint64, len(infos))
	var off uint64
	for i, t := range infos {
		writeString(&b, t.Name)
		b.Write(le.AppendUint32(nil, uint32(len(t.Dims))))
		for _, d := range t.Dims {
			b.Write(le.AppendUint64(nil, d))
		}
		b.Write(le.AppendUint32(nil, uint32(t.Type)))
		b.Write(le.AppendUint64(nil, off))
		offsets[i] = off
		off = pad(off+t.ByteSize(), uint64(align))
	}
	b.Write(make([]byte, pad(uint64(b.Len()), uint64(align))-uint64(b.Len())))
	return b.Bytes(), offsets, nil
}

func writeString(b *bytes.Buffer, s string) {
	b.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(s))))
	b.WriteString(s)
}

// writeValue encodes a value checked by valueType (without its type code).
func writeValue(b *bytes.Buffer, v any) {
	le := binary.LittleEndian
	if t, elem, n, _ := valueType(v); t == TypeArray {
		b.Write(le.AppendUint32(nil, uint32(elem)))
		b.Write(le.AppendUint64(nil, uint64(n)))
		if s, ok := v.([]string); ok {
			for _, x := range s {
				writeString(b, x)
			}
			return
		}
		if bs, ok := v.([]bool); ok {
			for _, x := range bs {
				b.WriteByte(boolByte(x))
			}
			return
		}
		_ = binary.Write(b, le, v) // fixed-size numeric slices
		return
	}
	switch x := v.(type) {
	case string:
		writeString(b, x)
	case bool:
		b.WriteByte(boolByte(x))
	case float32:
		b.Write(le.AppendUint32(nil, math.Float32bits(x)))
	case float64:
		b.Write(le.AppendUint64(nil, math.Float64bits(x)))
	default:
		_ = binary.Write(b, le, v)
	}
}

func boolByte(x bool) byte {
	if x {
		return 1
	}
	return 0
}

// Marshal encodes a whole GGUF file in memory. Each tensor's Data must have its ByteSize.
func Marshal(kvs []KV, tensors []Tensor) ([]byte, error) {
	infos := infosOf(tensors)
	hdr, offsets, err := header(kvs, infos)
	if err != nil {
		return nil, err
	}
	if err := checkData(tensors); err != nil {
		return nil, err
	}
	align, _ := alignmentOf(kvs)
	b := bytes.NewBuffer(hdr)
	for i, t := range tensors {
		b.Write(make([]byte, uint64(len(hdr))+offsets[i]-uint64(b.Len())))
		b.Write(t.Data)
	}
	b.Write(make([]byte, pad(uint64(b.Len()), uint64(align))-uint64(b.Len())))
	return b.Bytes(), nil
}

func checkData(tensors []Tensor) error {
	for i := range tensors {
		if want := tensors[i].ByteSize(); uint64(len(tensors[i].Data)) != want {
			return fmt.Errorf("tensor %s: data has %d bytes, want %d (%v of %s)", tensors[i].Name, len(tensors[i].Data), want, tensors[i].Dims, tensors[i].Type)
		}
	}
	return nil
}

// WriteFile writes a GGUF file atomically: every check is made before anything is created, then
// the file is written to a temporary sibling, synced and renamed to path. On error path is left
// as it was and no temporary remains. path's folder must exist.
func WriteFile(path string, kvs []KV, tensors []Tensor) error {
	if _, _, err := header(kvs, infosOf(tensors)); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := checkData(tensors); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	w, err := Create(path, kvs, infosOf(tensors))
	if err != nil {
		return err
	}
	for i := range tensors {
		if err := w.WriteTensor(tensors[i].Name, tensors[i].Data); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Close()
}

// Writer streams a GGUF file: Create writes the header, WriteTensor each tensor's data in the
// order of the infos (one tensor at a time, so a whole model never needs to be in memory), Close
// checks every tensor came, syncs and renames the temporary file to path. Until Close succeeds
// path is unchanged; after an error or Abort no temporary remains.
type Writer struct {
	path, tmp string
	f         *os.File
	buf       *bufio.Writer
	infos     []TensorInfo
	offsets   []uint64
	align     uint64
	next      int    // the tensor WriteTensor expects
	pos       uint64 // bytes written into the data section
	err       error
}

// Create validates the key-values and tensor infos, creates a temporary file beside path and
// writes the header into it.
func Create(path string, kvs []KV, infos []TensorInfo) (*Writer, error) {
	hdr, offsets, err := header(kvs, infos)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := safetensors.CheckOutputPath(path); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(path), atomicfile.TempPrefix(filepath.Base(path))+"*")
	if err != nil {
		return nil, fmt.Errorf("writing %s: %v", path, pathErr(err))
	}
	align, _ := alignmentOf(kvs)
	w := &Writer{path: path, tmp: f.Name(), f: f, buf: bufio.NewWriterSize(f, 1<<20), infos: infosOf(tensorsOf(infos)),
		offsets: offsets, align: uint64(align)}
	if _, err := w.buf.Write(hdr); err != nil {
		return nil, w.fail(err)
	}
	return w, nil
}

func tensorsOf(infos []TensorInfo) []Tensor {
	out := make([]Tensor, len(infos))
	for i := range infos {
		out[i].TensorInfo = infos[i]
	}
	return out
}

// WriteTensor writes the data of the next tensor, which must be named name and have its
// ByteSize.
func (w *Writer) WriteTensor(name string, data []byte) error {
	if w.err != nil {
		return w.err
	}
	if w.next >= len(w.infos) {
		return w.fail(fmt.Errorf("tensor %s: all %d tensors are already written", name, len(w.infos)))
	}
	t := &w.infos[w.next]
	if t.Name != name {
		return w.fail(fmt.Errorf("tensor %s written where %s (tensor %d) is due: write them in the order given to Create", name, t.Name, w.next))
	}
	if uint64(len(data)) != t.ByteSize() {
		return w.fail(fmt.Errorf("tensor %s: data has %d bytes, want %d (%v of %s)", name, len(data), t.ByteSize(), t.Dims, t.Type))
	}
	if _, err := w.buf.Write(make([]byte, w.offsets[w.next]-w.pos)); err != nil {
		return w.fail(err)
	}
	if _, err := w.buf.Write(data); err != nil {
		return w.fail(err)
	}
	w.pos = w.offsets[w.next] + uint64(len(data))
	w.next++
	return nil
}

// Close pads the data section, syncs the file and renames it to path. It is an error if a tensor
// was not written.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.next != len(w.infos) {
		return w.fail(fmt.Errorf("closed after %d of %d tensors; %s was not written", w.next, len(w.infos), w.infos[w.next].Name))
	}
	if _, err := w.buf.Write(make([]byte, pad(w.pos, w.align)-w.pos)); err != nil {
		return w.fail(err)
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
	if err := atomicfile.Rename(w.tmp, w.path); err != nil {
		_ = os.Remove(w.tmp)
		w.err = fmt.Errorf("writing %s: %v", w.path, pathErr(err))
		return w.err
	}
	atomicfile.SyncDir(filepath.Dir(w.path))
	w.err = errors.New("gguf: Writer already closed")
	return nil
}

// Abort removes the temporary file; path is left as it was.
func (w *Writer) Abort() {
	if w.f != nil {
		_ = w.f.Close()
		_ = os.Remove(w.tmp)
		w.f = nil
	}
	if w.err == nil {
		w.err = errors.New("gguf: Writer aborted")
	}
}

func (w *Writer) fail(err error) error {
	w.Abort()
	w.err = fmt.Errorf("writing %s: %w", w.path, pathErr(err))
	return w.err
}

// pathErr strips the *fs.PathError around err, whose path may be the temporary file.
func pathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
