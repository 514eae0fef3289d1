package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sample returns key-values of every type and tensors of three types with odd sizes, so that
// padding between tensors is exercised.
func sample(t testing.TB) ([]KV, []Tensor) {
	kvs := []KV{
		{"general.architecture", "llama"}, {"u8", uint8(7)}, {"i8", int8(-7)}, {"u16", uint16(65535)},
		{"i16", int16(-300)}, {"u32", uint32(1 << 31)}, {"i32", int32(-5)}, {"f32", float32(0.25)},
		{"b", true}, {"u64", uint64(1 << 40)}, {"i64", int64(-1 << 40)}, {"f64", math.Pi},
		{"empty", ""}, {"a.u8", []uint8{1, 2}}, {"a.i8", []int8{-1}}, {"a.u16", []uint16{3}},
		{"a.i16", []int16{-3, 4}}, {"a.u32", []uint32{}}, {"a.i32", []int32{-9, 9, 0}},
		{"a.f32", []float32{1.5, -2}}, {"a.bool", []bool{true, false}}, {"a.str", []string{"Ġw", "", "x y"}},
		{"a.u64", []uint64{1}}, {"a.i64", []int64{-1}}, {"a.f64", []float64{math.E}},
	}
	f16, err := Encode(F16, []float32{1, -2, 0.5})
	if err != nil {
		t.Fatal(err)
	}
	bf, err := Encode(BF16, []float32{3, 4})
	if err != nil {
		t.Fatal(err)
	}
	tensors := []Tensor{
		{TensorInfo{"w.f32", F32, []uint64{3, 2}}, F32Bytes([]float32{1, 2, 3, 4, 5, 6})},
		{TensorInfo{"w.f16", F16, []uint64{3}}, f16},
		{TensorInfo{"w.bf16", BF16, []uint64{1, 2, 1, 1}}, bf},
	}
	return kvs, tensors
}

func TestRoundTrip(t *testing.T) {
	kvs, tensors := sample(t)
	for _, tc := range []struct {
		name  string
		kvs   []KV
		align int
	}{
		{"default alignment", kvs, 32},
		{"alignment 64", append([]KV{{KeyAlignment, uint32(64)}}, kvs...), 64},
		{"alignment 1", append([]KV{{KeyAlignment, uint32(1)}}, kvs...), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Marshal(tc.kvs, tensors)
			if err != nil {
				t.Fatal(err)
			}
			if len(b)%tc.align != 0 {
				t.Errorf("file is %d bytes, not a multiple of %d", len(b), tc.align)
			}
			f, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if f.Alignment != tc.align {
				t.Errorf("alignment %d, want %d", f.Alignment, tc.align)
			}
			if !reflect.DeepEqual(f.KVs, tc.kvs) {
				t.Errorf("key-values differ:\n got %v\nwant %v", f.KVs, tc.kvs)
			}
			if !reflect.DeepEqual(f.Tensors, tensors) {
				t.Errorf("tensors differ:\n got %v\nwant %v", f.Tensors, tensors)
			}
			// The data section starts aligned, and each tensor's data at an aligned offset.
			for _, tt := range f.Tensors {
				i := bytes.Index(b, tt.Data)
				if i < 0 || i%tc.align != 0 {
					t.Errorf("tensor %s data at byte %d, want a multiple of %d", tt.Name, i, tc.align)
				}
			}
			b2, err := Marshal(f.KVs, f.Tensors)
			if err != nil || !bytes.Equal(b, b2) {
				t.Errorf("re-marshalling the parsed file gives other bytes (err %v)", err)
			}
		})
	}
}

// TestLayout pins the byte layout of a small file against the spec, written out by hand.
func TestLayout(t *testing.T) {
	b, err := Marshal([]KV{{"k", uint32(5)}}, []Tensor{{TensorInfo{"t", F32, []uint64{2}}, F32Bytes([]float32{1, -1})}})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	var w bytes.Buffer
	w.WriteString("GGUF")
	w.Write(le.AppendUint32(nil, 3))
	w.Write(le.AppendUint64(nil, 1)) // tensors
	w.Write(le.AppendUint64(nil, 1)) // key-values
	w.Write(le.AppendUint64(nil, 1))
	w.WriteString("k")
	w.Write(le.AppendUint32(nil, 4)) // uint32
	w.Write(le.AppendUint32(nil, 5))
	w.Write(le.AppendUint64(nil, 1))
	w.WriteString("t")
	w.Write(le.AppendUint32(nil, 1)) // n_dims
	w.Write(le.AppendUint64(nil, 2))
	w.Write(le.AppendUint32(nil, 0)) // F32
	w.Write(le.AppendUint64(nil, 0)) // offset
	for w.Len()%32 != 0 {
		w.WriteByte(0)
	}
	w.Write(le.AppendUint32(nil, math.Float32bits(1)))
	w.Write(le.AppendUint32(nil, math.Float32bits(-1)))
	for w.Len()%32 != 0 {
		w.WriteByte(0)
	}
	if !bytes.Equal(b, w.Bytes()) {
		t.Fatalf("layout differs:\n got % x\nwant % x", b, w.Bytes())
	}
}

func TestEncodeDecode(t *testing.T) {
	vals := []float32{0, 1, -2.5, 1e-3, 65504, float32(math.Inf(-1))}
	for _, tc := range []struct {
		typ    TensorType
		maxRel float64
	}{{F32, 0}, {F16, 1e-3}, {BF16, 8e-3}} {
		b, err := Encode(tc.typ, vals)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(tc.typ, b)
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if math.IsInf(float64(v), 0) {
				if got[i] != v {
					t.Errorf("%s: %g decoded as %g", tc.typ, v, got[i])
				}
				continue
			}
			if d := math.Abs(float64(got[i] - v)); d > tc.maxRel*math.Abs(float64(v)) {
				t.Errorf("%s: %g decoded as %g", tc.typ, v, got[i])
			}
		}
	}
	if _, err := Encode(F16, []float32{1, 70000}); err == nil || !strings.Contains(err.Error(), "value 1 (70000) overflows F16") {
		t.Errorf("F16 overflow: %v", err)
	}
	if _, err := Encode(I32, []float32{1}); err == nil {
		t.Error("encoding as I32 succeeded")
	}
	if typ, err := ParseTensorType("bf16"); err != nil || typ != BF16 {
		t.Errorf("ParseTensorType(bf16) = %v, %v", typ, err)
	}
	if _, err := ParseTensorType("q4_0"); err == nil || !strings.Contains(err.Error(), "F32, F16, BF16") {
		t.Errorf("ParseTensorType(q4_0): %v", err)
	}
}

func TestWriterRefuses(t *testing.T) {
	ok := []Tensor{{TensorInfo{"t", F32, []uint64{1}}, F32Bytes([]float32{1})}}
	for _, tc := range []struct {
		name    string
		kvs     []KV
		tensors []Tensor
		want    string
	}{
		{"duplicate key", []KV{{"a", uint8(1)}, {"a", uint8(2)}}, ok, "key a appears twice"},
		{"empty key", []KV{{"", uint8(1)}}, ok, "empty key"},
		{"bad value", []KV{{"a", 3}}, ok, "key a: value of Go type int is not a GGUF type"},
		{"nested array", []KV{{"a", [][]int32{{1}}}}, ok, "not a GGUF type"},
		{"bad alignment", []KV{{KeyAlignment, uint32(24)}}, ok, "power of two"},
		{"alignment type", []KV{{KeyAlignment, uint64(32)}}, ok, "want uint32"},
		{"duplicate tensor", nil, append(ok, ok[0]), "tensor name t appears twice"},
		{"no dims", nil, []Tensor{{TensorInfo{"t", F32, nil}, nil}}, "0 dims, want 1 to 4"},
		{"zero dim", nil, []Tensor{{TensorInfo{"t", F32, []uint64{2, 0}}, nil}}, "dim 1 is 0"},
		{"long name", nil, []Tensor{{TensorInfo{strings.Repeat("n", 64), F32, []uint64{1}}, F32Bytes([]float32{1})}}, "longer than llama.cpp's 63"},
		{"quantized", nil, []Tensor{{TensorInfo{"t", TensorType(2), []uint64{32}}, make([]byte, 18)}}, "type 2, which this package does not read or write"},
		{"short data", nil, []Tensor{{TensorInfo{"t", F32, []uint64{2}}, F32Bytes([]float32{1})}}, "data has 4 bytes, want 8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.gguf")
			if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
				t.Fatal(err)
			}
			err := WriteFile(path, tc.kvs, tc.tensors)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if b, _ := os.ReadFile(path); string(b) != "old" {
				t.Errorf("the existing file was changed to %q", b)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("the folder holds %d entries, want only the old file", len(ents))
			}
		})
	}
}

func TestWriterStreams(t *testing.T) {
	kvs, tensors := sample(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "m.gguf")
	if err := WriteFile(path, kvs, tensors); err != nil {
		t.Fatal(err)
	}
	f, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Tensors, tensors) {
		t.Error("tensors differ after WriteFile + Read")
	}
	want, _ := Marshal(kvs, tensors)
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Error("WriteFile and Marshal give different bytes")
	}
	// Out of order, twice, too few: errors, and nothing is left behind.
	infos := infosOf(tensors)
	for _, tc := range []struct {
		name  string
		write func(w *Writer) error
		want  string
	}{
		{"out of order", func(w *Writer) error { return w.WriteTensor("w.f16", tensors[1].Data) }, "w.f16 written where w.f32 (tensor 0) is due"},
		{"wrong size", func(w *Writer) error { return w.WriteTensor("w.f32", tensors[1].Data) }, "data has 6 bytes, want 24"},
		{"too few", func(w *Writer) error {
			if err := w.WriteTensor("w.f32", tensors[0].Data); err != nil {
				return err
			}
			return w.Close()
		}, "closed after 1 of 3 tensors; w.f16 was not written"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, tc.name+".gguf")
			w, err := Create(out, kvs, infos)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.write(w); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if err := w.Close(); err == nil {
				t.Error("Close after an error succeeded")
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("the file was created")
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("the folder holds %d entries, want only m.gguf", len(ents))
	}
	if _, err := Create(filepath.Join(dir, "no", "x.gguf"), kvs, infos); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing folder: %v", err)
	}
}

// TestParseRefuses corrupts a valid file field by field; every corruption is an error naming the
// field, never a panic.
func TestParseRefuses(t *testing.T) {
	good, err := Marshal([]KV{{"k", uint32(5)}, {"s", []string{"ab"}}}, []Tensor{
		{TensorInfo{"t", F32, []uint64{2}}, F32Bytes([]float32{1, -1})},
		{TensorInfo{"u", F16, []uint64{1}}, []byte{0, 0x3c}},
	})
	if err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	// Byte offsets of the fields in good.
	const (
		verAt     = 4
		ntAt      = 8
		nkvAt     = 16
		key0LenAt = 24
		type0At   = 33
		val0At    = 37
		arrTypeAt = 41 + 8 + 1 + 4
		arrLenAt  = arrTypeAt + 4
		info0At   = arrLenAt + 8 + 8 + 2
		ndim0At   = info0At + 9
		dim0At    = ndim0At + 4
		ttype0At  = dim0At + 8
		off0At    = ttype0At + 4
		off1At    = off0At + 8 + 9 + 4 + 8 + 4
	)
	set32 := func(at int, v uint32) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint32(b[at:], v); return b }
	}
	set64 := func(at int, v uint64) func([]byte) []byte {
		return func(b []byte) []byte { le.PutUint64(b[at:], v); return b }
	}
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
		want string
	}{
		{"empty", func([]byte) []byte { return nil }, "not a GGUF file"},
		{"magic", func(b []byte) []byte { b[0] = 'g'; return b }, "not a GGUF file"},
		{"version 2", set32(verAt, 2), "version is 2; this reader reads version 3"},
		{"big endian", set32(verAt, 3<<24), "big-endian"},
		{"truncated header", func(b []byte) []byte { return b[:12] }, "tensor count (at byte 8): needs 8 bytes"},
		{"huge kv count", set64(nkvAt, 1<<62), "key-value count"},
		{"huge tensor count", set64(ntAt, 1<<62), "tensor count"},
		{"huge key length", set64(key0LenAt, 1<<40), "key-value 0 key"},
		{"value type", set32(type0At, 13), "key k type (at byte 37): unknown value type 13"},
		{"bool value", func(b []byte) []byte { le.PutUint32(b[type0At:], uint32(TypeBool)); b[val0At] = 2; return b }, "bool is 2"},
		{"array of arrays", set32(arrTypeAt, uint32(TypeArray)), "an array of arrays"},
		{"array element type", set32(arrTypeAt, 99), "array element type"},
		{"huge array", set64(arrLenAt, 1<<61), "key s array length"},
		{"n_dims 0", set32(ndim0At, 0), "tensor t has 0 dims"},
		{"n_dims 5", set32(ndim0At, 5), "tensor t has 5 dims"},
		{"dim 0", set64(dim0At, 0), "dim 0 is 0"},
		{"huge dim", set64(dim0At, 1<<62), "need more than"},
		{"tensor type", set32(ttype0At, 2), "type 2, which this package does not read"},
		{"first offset", set64(off0At, 32), "tensor t offset is 32, want 0"},
		{"second offset", set64(off1At, 8), "tensor u offset is 8, want 32"},
		{"truncated data", func(b []byte) []byte { return b[:len(b)-40] }, "tensor u: 2 bytes at data offset 32 run past the end"},
		{"duplicate key", func(b []byte) []byte { b[key0LenAt+8+1+4+4+8] = 'k'; return b }, "key k appears twice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.edit(bytes.Clone(good)))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := Parse(good); err != nil {
		t.Fatal(err)
	}
}
