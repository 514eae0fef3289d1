package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"unicode/utf8"
)

// Read reads and parses the GGUF file at path (see Parse).
func Read(path string) (*File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse parses a whole GGUF v3 file. It is strict, as llama.cpp's loader is: the magic and
// version, every count, length and type code, UTF-8 keys and tensor names (unique), tensor dims
// (1 to 4, each ≥ 1) and types (those this package supports), general.alignment, and tensor
// offsets (the first 0, each the previous tensor's end rounded up to the alignment, the data
// within the file) are checked. Every count is checked against the bytes that remain before
// anything is allocated, so a hostile file cannot make it allocate more than a small multiple of
// its own size.
// Errors name the field and its byte offset. Tensor Data aliases b.
func Parse(b []byte) (*File, error) {
	r := &reader{b: b}
	if len(b) < 4 || string(b[:4]) != Magic {
		return nil, fmt.Errorf("not a GGUF file: it does not start with %q (starts with %q)", Magic, b[:min(len(b), 4)])
	}
	r.pos = 4
	version, err := r.u32("version")
	if err != nil {
		return nil, err
	}
	if version != Version {
		if version == 3<<24 {
			return nil, fmt.Errorf("version: a big-endian GGUF file; only little-endian files are read")
		}
		return nil, fmt.Errorf("version is %d; this reader reads version %d", version, Version)
	}
	nt, err := r.u64("tensor count")
	if err != nil {
		return nil, err
	}
	nkv, err := r.u64("key-value count")
	if err != nil {
		return nil, err
	}
	// A key-value takes at least 8 (key length) + 1 (key) + 4 (type) + 1 bytes; a tensor info
	// at least 8 + 1 + 4 + 8 + 4 + 8.
	if nkv > r.left()/14 {
		return nil, r.errorf("key-value count", "%d key-values cannot fit in the %d bytes that remain", nkv, r.left())
	}
	f := &File{KVs: make([]KV, 0, nkv)}
	seen := make(map[string]bool, nkv)
	for i := uint64(0); i < nkv; i++ {
		field := fmt.Sprintf("key-value %d", i)
		key, err := r.str(field+" key", maxKeyLen)
		if err != nil {
			return nil, err
		}
		if key == "" {
			return nil, r.errorf(field+" key", "empty key")
		}
		if seen[key] {
			return nil, r.errorf(field+" key", "key %s appears twice", key)
		}
		seen[key] = true
		t, err := r.u32("key " + key + " type")
		if err != nil {
			return nil, err
		}
		v, err := r.value(ValueType(t), "key "+key)
		if err != nil {
			return nil, err
		}
		f.KVs = append(f.KVs, KV{Key: key, Value: v})
	}
	if f.Alignment, err = alignmentOf(f.KVs); err != nil {
		return nil, err
	}
	if nt > r.left()/33 {
		return nil, r.errorf("tensor count", "%d tensor infos cannot fit in the %d bytes that remain", nt, r.left())
	}
	f.Tensors = make([]Tensor, nt)
	offsets := make([]uint64, nt)
	names := make(map[string]bool, nt)
	for i := range f.Tensors {
		field := fmt.Sprintf("tensor %d", i)
		t := &f.Tensors[i]
		if t.Name, err = r.str(field+" name", MaxNameLen); err != nil {
			return nil, err
		}
		if names[t.Name] {
			return nil, r.errorf(field+" name", "tensor name %s appears twice", t.Name)
		}
		names[t.Name] = true
		nd, err := r.u32(field + " n_dims")
		if err != nil {
			return nil, err
		}
		if nd < 1 || nd > MaxDims {
			return nil, r.errorf(field+" n_dims", "tensor %s has %d dims, want 1 to %d", t.Name, nd, MaxDims)
		}
		t.Dims = make([]uint64, nd)
		for j := range t.Dims {
			if t.Dims[j], err = r.u64(fmt.Sprintf("tensor %s dim %d", t.Name, j)); err != nil {
				return nil, err
			}
		}
		typ, err := r.u32("tensor " + t.Name + " type")
		if err != nil {
			return nil, err
		}
		t.Type = TensorType(typ)
		if err := t.TensorInfo.check(uint64(len(b))); err != nil {
			return nil, r.errorf(field, "%v", err)
		}
		if offsets[i], err = r.u64("tensor " + t.Name + " offset"); err != nil {
			return nil, err
		}
	}
	align := uint64(f.Alignment)
	start := pad(uint64(r.pos), align)
	if start > uint64(len(b)) {
		return nil, r.errorf("padding", "the file ends at %d, before the data section at %d", len(b), start)
	}
	var want uint64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if offsets[i] != want {
			return nil, fmt.Errorf("tensor %s offset is %d, want %d (tensors follow each other, each at a multiple of %d)", t.Name, offsets[i], want, align)
		}
		size := t.ByteSize()
		if size > uint64(len(b))-start || offsets[i] > uint64(len(b))-start-size {
			return nil, fmt.Errorf("tensor %s: %d bytes at data offset %d run past the end of the file (%d bytes of data)", t.Name, size, offsets[i], uint64(len(b))-start)
		}
		t.Data = b[start+offsets[i] : start+offsets[i]+size : start+offsets[i]+size]
		want = pad(offsets[i]+size, align)
	}
	return f, nil
}

type reader struct {
	b   []byte
	pos int
}

func (r *reader) left() uint64 { return uint64(len(r.b) - r.pos) }

func (r *reader) errorf(field, format string, args ...any) error {
	return fmt.Errorf("%s (at byte %d): %s", field, r.pos, fmt.Sprintf(format, args...))
}

func (r *reader) take(n uint64, field string) ([]byte, error) {
	if n > r.left() {
		return nil, r.errorf(field, "needs %d bytes, the file has %d left", n, r.left())
	}
	s := r.b[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return s, nil
}

func (r *reader) u32(field string) (uint32, error) {
	s, err := r.take(4, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(s), nil
}

func (r *reader) u64(field string) (uint64, error) {
	s, err := r.take(8, field)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(s), nil
}

// str reads a string; a name (a key or tensor name, at most maxLen bytes) must be UTF-8, other
// strings (maxLen 0) may hold any bytes, as llama.cpp's token lists may.
func (r *reader) str(field string, maxLen uint64) (string, error) {
	n, err := r.u64(field + " length")
	if err != nil {
		return "", err
	}
	if maxLen > 0 && n > maxLen {
		return "", r.errorf(field, "%d bytes, longer than %d", n, maxLen)
	}
	s, err := r.take(n, field)
	if err != nil {
		return "", err
	}
	if maxLen > 0 && !utf8.Valid(s) {
		return "", r.errorf(field, "not valid UTF-8")
	}
	return string(s), nil
}

// value reads a value of type t.
func (r *reader) value(t ValueType, field string) (any, error) {
	switch t {
	case TypeString:
		return r.str(field+" value", 0)
	case TypeArray:
		return r.array(field)
	}
	size := t.size()
	if size == 0 {
		return nil, r.errorf(field+" type", "unknown value type %d (known: 0–12)", uint32(t))
	}
	s, err := r.take(uint64(size), field+" value")
	if err != nil {
		return nil, err
	}
	return scalar(t, s, field, r)
}

func scalar(t ValueType, s []byte, field string, r *reader) (any, error) {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return s[0], nil
	case TypeInt8:
		return int8(s[0]), nil
	case TypeBool:
		if s[0] > 1 {
			return nil, r.errorf(field, "bool is %d, want 0 or 1", s[0])
		}
		return s[0] == 1, nil
	case TypeUint16:
		return le.Uint16(s), nil
	case TypeInt16:
		return int16(le.Uint16(s)), nil
	case TypeUint32:
		return le.Uint32(s), nil
	case TypeInt32:
		return int32(le.Uint32(s)), nil
	case TypeFloat32:
		return math.Float32frombits(le.Uint32(s)), nil
	case TypeUint64:
		return le.Uint64(s), nil
	case TypeInt64:
		return int64(le.Uint64(s)), nil
	default: // TypeFloat64
		return math.Float64frombits(le.Uint64(s)), nil
	}
}

// array reads an array value (element type, count, elements) as a Go slice.
func (r *reader) array(field string) (any, error) {
	et, err := r.u32(field + " array element type")
	if err != nil {
		return nil, err
	}
	elem := ValueType(et)
	n, err := r.u64(field + " array length")
	if err != nil {
		return nil, err
	}
	if elem == TypeArray {
		return nil, r.errorf(field, "an array of arrays, which this reader does not read")
	}
	if elem == TypeString {
		if n > r.left()/8 {
			return nil, r.errorf(field+" array length", "%d strings cannot fit in the %d bytes that remain", n, r.left())
		}
		out := make([]string, n)
		for i := range out {
			if out[i], err = r.str(fmt.Sprintf("%s[%d]", field, i), 0); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	size := elem.size()
	if size == 0 {
		return nil, r.errorf(field+" array element type", "unknown value type %d (known: 0–12)", et)
	}
	if n > r.left()/uint64(size) {
		return nil, r.errorf(field+" array length", "%d %s values need %d bytes, the file has %d left", n, elem, n*uint64(size), r.left())
	}
	s, _ := r.take(n*uint64(size), field)
	le := binary.LittleEndian
	switch elem {
	case TypeUint8:
		return append([]uint8(nil), s...), nil
	case TypeInt8:
		out := make([]int8, n)
		for i := range out {
			out[i] = int8(s[i])
		}
		return out, nil
	case TypeBool:
		out := make([]bool, n)
		for i := range out {
			if s[i] > 1 {
				return nil, r.errorf(fmt.Sprintf("%s[%d]", field, i), "bool is %d, want 0 or 1", s[i])
			}
			out[i] = s[i] == 1
		}
		return out, nil
	case TypeUint16, TypeInt16:
		u := make([]uint16, n)
		for i := range u {
			u[i] = le.Uint16(s[2*i:])
		}
		if elem == TypeUint16 {
			return u, nil
		}
		out := make([]int16, n)
		for i := range out {
			out[i] = int16(u[i])
		}
		return out, nil
	case TypeUint32, TypeInt32, TypeFloat32:
		u := make([]uint32, n)
		for i := range u {
			u[i] = le.Uint32(s[4*i:])
		}
		switch elem {
		case TypeUint32:
			return u, nil
		case TypeInt32:
			out := make([]int32, n)
			for i := range out {
				out[i] = int32(u[i])
			}
			return out, nil
		}
		out := make([]float32, n)
		for i := range out {
			out[i] = math.Float32frombits(u[i])
		}
		return out, nil
	default: // 64-bit
		u := make([]uint64, n)
		for i := range u {
			u[i] = le.Uint64(s[8*i:])
		}
		switch elem {
		case TypeUint64:
			return u, nil
		case TypeInt64:
			out := make([]int64, n)
			for i := range out {
				out[i] = int64(u[i])
			}
			return out, nil
		}
		out := make([]float64, n)
		for i := range out {
			out[i] = math.Float64frombits(u[i])
		}
		return out, nil
	}
}
