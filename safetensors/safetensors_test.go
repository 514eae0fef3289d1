package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func mustF32(t testing.TB, name, dtype string, shape []int, v []float32) Tensor {
	t.Helper()
	x, err := FromFloat32s(name, dtype, shape, v)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

func sample(t testing.TB) ([]Tensor, map[string]string) {
	return []Tensor{
		mustF32(t, "a.weight", F32, []int{2, 3}, []float32{1, 2, 3, 4, 5, -6}),
		mustF32(t, "b", F16, []int{3}, []float32{0.5, -2, 65504}),
		mustF32(t, "c.bf", BF16, []int{1, 2}, []float32{1.5, -3}),
		mustF32(t, "scalar", F64, []int{}, []float32{7}),
		{Name: "ids", DType: I64, Shape: []int{2}, Data: make([]byte, 16)},
		{Name: "empty", DType: F32, Shape: []int{0, 4}, Data: nil},
	}, map[string]string{"format": "pt", "note": "ünïcode"}
}

func TestRoundTrip(t *testing.T) {
	ts, md := sample(t)
	b, err := Marshal(ts, md)
	if err != nil {
		t.Fatal(err)
	}
	hl := binary.LittleEndian.Uint64(b)
	if hl%8 != 0 {
		t.Errorf("header length %d not padded to 8", hl)
	}
	f, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Metadata, md) {
		t.Errorf("metadata %v, want %v", f.Metadata, md)
	}
	if len(f.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
	}
	for i := range ts {
		g := f.Tensors[i]
		if g.Name != ts[i].Name || g.DType != ts[i].DType || !reflect.DeepEqual(g.Shape, ts[i].Shape) || !bytes.Equal(g.Data, ts[i].Data) {
			t.Errorf("tensor %d: got %v, want %v", i, g.String(), ts[i].String())
		}
	}
	v, err := f.Get("b").Float32s()
	if err != nil || !reflect.DeepEqual(v, []float32{0.5, -2, 65504}) {
		t.Errorf("F16 values %v %v", v, err)
	}
	v, _ = f.Get("a.weight").Float32s()
	if v[5] != -6 {
		t.Errorf("F32 values %v", v)
	}
	d, _ := f.Get("scalar").Float64s()
	if len(d) != 1 || d[0] != 7 {
		t.Errorf("scalar %v", d)
	}
}

// rawFile builds a file from a literal header and buffer (for bad-input cases).
func rawFile(header string, buf []byte) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint64(b, uint64(len(header)))
	b = append(b, header...)
	return append(b, buf...)
}

func TestParseErrors(t *testing.T) {
	good := rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	if _, err := Parse(good); err != nil {
		t.Fatalf("good file rejected: %v", err)
	}
	huge := make([]byte, 16)
	binary.LittleEndian.PutUint64(huge, 1<<62)
	past := make([]byte, 16)
	binary.LittleEndian.PutUint64(past, 100)
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"truncated length", []byte{1, 2, 3}, "too short"},
		{"absurd header length", huge, "limit"},
		{"header past end", past, "header length of 100 but only 8 bytes follow; truncated?"},
		{"truncated buffer", good[:len(good)-1], "buffer"},
		{"extra buffer bytes", append(append([]byte{}, good...), 0), "cover"},
		{"not json", rawFile(`{"a":xx}`, nil), "invalid JSON"},
		{"not object", rawFile(`[1,2,3]`, nil), "JSON object"},
		{"trailing junk", rawFile(`{}{}`, nil), "trailing"},
		{"non utf8", rawFile("{\"\xff\":1}", nil), "UTF-8"},
		{"duplicate key", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "duplicate key"},
		{"duplicate nested key", rawFile(`{"a":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "duplicate key"},
		{"unknown dtype", rawFile(`{"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "unknown dtype"},
		{"missing field", rawFile(`{"a":{"dtype":"F32","shape":[1]}}`, make([]byte, 4)), "needs"},
		{"negative dim", rawFile(`{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)), "negative"},
		{"fractional dim", rawFile(`{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, make([]byte, 4)), "bad entry"},
		{"size mismatch", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, make([]byte, 8)), "needs 8 bytes"},
		{"offsets reversed", rawFile(`{"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}}`, make([]byte, 4)), "invalid data_offsets"},
		{"offsets out of range", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 4)), "out of range"},
		{"offsets three", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, make([]byte, 4)), "[begin, end]"},
		{"overlap", rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "overlaps"},
		{"gap", rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)), "gap"},
		{"huge shape", rawFile(`{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}}`, make([]byte, 4)), "larger than"},
		{"metadata not strings", rawFile(`{"__metadata__":{"a":1}}`, nil), "object of strings"},
		{"empty name", rawFile(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), "empty name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if err == nil {
				t.Fatalf("accepted")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
}

// TestReadNotSafetensors: files of other kinds are named and called "not a safetensors file",
// with what they look like, instead of an absurd header length.
func TestReadNotSafetensors(t *testing.T) {
	good, md := sample(t)
	whole, err := Marshal(good, md)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
		want string
	}{
		{"config.json", []byte(`{"peft_type": "LORA", "r": 8, "lora_alpha": 16}` + "\n"), "(it looks like JSON text; its first 8 bytes give a header length of "},
		{"notes.txt", []byte("these are not tensors\n"), "(it looks like text; its first 8 bytes give a header length of "},
		{"img.png", append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...), "(it is a PNG image; "},
		{"model.bin", append([]byte("PK\x03\x04"), make([]byte, 40)...), "(it is a zip archive (a PyTorch .bin/.pt checkpoint is one); "},
		{"lfs.safetensors", []byte("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n"), "(it is a Git LFS pointer"},
		{"page.safetensors", []byte("<!DOCTYPE html><html><body>Not Found</body></html>"), "(it looks like an HTML page"},
		{"empty.safetensors", nil, "(0 bytes, too short for the 8-byte header length; truncated?)"},
		{"cut-length.safetensors", whole[:5], "(5 bytes, too short for the 8-byte header length; truncated?)"},
		{"cut-header.safetensors", whole[:20], "but only 12 bytes follow; truncated?)"},
		{"array-header.safetensors", rawFile(`[1,2,3]`, nil), "(the 7-byte header does not start with a JSON object '{')"},
	}
	dir := t.TempDir()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := filepath.Join(dir, c.name)
			if err := os.WriteFile(p, c.b, 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Read(p)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrNotSafetensors) {
				t.Errorf("error %q does not wrap ErrNotSafetensors", err)
			}
			prefix := p + ": not a safetensors file ("
			if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q, want %q… mentioning %q", err, prefix, c.want)
			}
		})
	}
	// A well-framed file with a bad entry is a safetensors file with an error, not another kind.
	p := filepath.Join(dir, "bad-dtype.safetensors")
	_ = os.WriteFile(p, rawFile(`{"a":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}`, make([]byte, 4)), 0o644)
	if _, err := Read(p); err == nil || errors.Is(err, ErrNotSafetensors) || !strings.Contains(err.Error(), `unknown dtype "F31"`) {
		t.Errorf("bad dtype: %v", err)
	}
}

// TestWriteOutputPathErrors: errors name the requested path (never the temporary file) and say
// what is wrong with its folder.
func TestWriteOutputPathErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	_ = os.WriteFile(file, []byte("x"), 0o644)
	ts, md := sample(t)
	cases := []struct {
		name, path, want string
	}{
		{"missing folder", filepath.Join(dir, "nope", "out.safetensors"), "out.safetensors: the folder " + filepath.Join(dir, "nope") + " does not exist"},
		{"folder is a file", filepath.Join(file, "out.safetensors"), "is not a folder"},
		{"path is a folder", dir, dir + " is a folder; give the path of a file to write"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := Write(c.path, ts, md)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), c.path) || strings.Contains(err.Error(), ".tmp-") {
				t.Errorf("error %q, want it to start with %s and mention %q (and no temporary file)", err, c.path, c.want)
			}
		})
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("failed writes left %d entries in %s", len(ents), dir)
	}
}

func TestMarshalErrors(t *testing.T) {
	cases := map[string][]Tensor{
		"short data":    {{Name: "a", DType: F32, Shape: []int{2}, Data: make([]byte, 4)}},
		"unknown dtype": {{Name: "a", DType: "X", Shape: []int{1}, Data: make([]byte, 4)}},
		"reserved name": {{Name: MetadataKey, DType: U8, Shape: []int{1}, Data: make([]byte, 1)}},
		"duplicate":     {{Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}, {Name: "a", DType: U8, Shape: []int{1}, Data: []byte{1}}},
		"negative dim":  {{Name: "a", DType: U8, Shape: []int{-1}}},
	}
	for name, ts := range cases {
		if _, err := Marshal(ts, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	ts, md := sample(t)
	if err := Write(p, ts, md); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(p)
	// A failing write leaves the old file untouched and no temporary file behind.
	bad := []Tensor{{Name: "a", DType: F32, Shape: []int{3}, Data: make([]byte, 4)}}
	if err := Write(p, bad, nil); err == nil {
		t.Fatal("bad write accepted")
	}
	now, _ := os.ReadFile(p)
	if !bytes.Equal(old, now) {
		t.Error("failed write changed the file")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write", len(ents))
	}
	// Writing into a missing directory fails cleanly.
	if err := Write(filepath.Join(dir, "nope", "x.safetensors"), ts, md); err == nil {
		t.Error("write into a missing directory accepted")
	}
	f, err := Read(p)
	if err != nil || len(f.Tensors) != len(ts) {
		t.Fatalf("read back: %v", err)
	}
}

func TestF16Exhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := F16ToFloat32(uint16(h))
		if f != f { // NaN
			if g := Float32ToF16(f); F16ToFloat32(g) == F16ToFloat32(g) {
				t.Fatalf("NaN %#04x became %#04x", h, g)
			}
			continue
		}
		if g := Float32ToF16(f); g != uint16(h) {
			t.Fatalf("f16 %#04x → %v → %#04x", h, f, g)
		}
	}
	// Ties to even and rounding between neighbours, checked in float64.
	for h := uint16(0); h < 0x7bff; h++ {
		lo, hi := float64(F16ToFloat32(h)), float64(F16ToFloat32(h+1))
		mid := float32((lo + hi) / 2) // exact in float32
		want := h
		if h&1 == 1 {
			want = h + 1
		}
		if g := Float32ToF16(mid); g != want {
			t.Fatalf("tie between %#04x and %#04x rounded to %#04x", h, h+1, g)
		}
		if g := Float32ToF16(math.Nextafter32(mid, float32(math.Inf(1)))); g != h+1 {
			t.Fatalf("above tie %#04x/%#04x rounded to %#04x", h, h+1, g)
		}
		if g := Float32ToF16(math.Nextafter32(mid, float32(math.Inf(-1)))); g != h {
			t.Fatalf("below tie %#04x/%#04x rounded to %#04x", h, h+1, g)
		}
		if g := Float32ToF16(-mid); g != want|0x8000 {
			t.Fatalf("negative tie rounded to %#04x", g)
		}
	}
	if Float32ToF16(65520) != 0x7c00 || Float32ToF16(65519.996) != 0x7bff || Float32ToF16(1e10) != 0x7c00 {
		t.Error("overflow rounding")
	}
	if Float32ToF16(1e-10) != 0 || Float32ToF16(-1e-10) != 0x8000 {
		t.Error("underflow")
	}
}

func TestBF16(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		f := BF16ToFloat32(uint16(h))
		if f != f {
			continue
		}
		if g := Float32ToBF16(f); g != uint16(h) {
			t.Fatalf("bf16 %#04x → %v → %#04x", h, f, g)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := math.Float32frombits(rng.Uint32())
		if f != f || math.IsInf(float64(f), 0) {
			continue
		}
		g := Float32ToBF16(f)
		// Independent check: the result is the nearest of the two bf16 neighbours (ties → even).
		down := uint16(math.Float32bits(f) >> 16)
		a, b := float64(BF16ToFloat32(down)), float64(BF16ToFloat32(down+1))
		if (down+1)&0x7fff == 0x7f80 { // the next value up is ±Inf: treat it as ±2^128 for rounding
			b = math.Copysign(math.Ldexp(1, 128), a)
		}
		d1, d2 := math.Abs(float64(f)-a), math.Abs(float64(f)-b)
		want := down
		if d2 < d1 || (d1 == d2 && down&1 == 1) {
			want = down + 1
		}
		if g != want {
			t.Fatalf("bf16(%v) = %#04x, want %#04x", f, g, want)
		}
	}
	if n := BF16ToFloat32(Float32ToBF16(float32(math.NaN()))); n == n {
		t.Error("NaN lost")
	}
}

func FuzzParse(f *testing.F) {
	ts, md := sample(f)
	b, err := Marshal(ts, md)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	b2, _ := Marshal(ts[:2], nil)
	f.Add(b2)
	f.Add(rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(rawFile(`{"__metadata__":{},"x":{"dtype":"U8","shape":[],"data_offsets":[0,1]}}  `, []byte{9}))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(data)
		if err != nil {
			return
		}
		out, err := Marshal(file.Tensors, file.Metadata)
		if err != nil {
			t.Fatalf("parsed file does not marshal: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("marshalled file does not parse: %v", err)
		}
		if len(again.Tensors) != len(file.Tensors) || !reflect.DeepEqual(again.Metadata, file.Metadata) {
			t.Fatalf("round trip changed the file")
		}
		for i := range file.Tensors {
			a, b := file.Tensors[i], again.Tensors[i]
			if a.Name != b.Name || a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) || !bytes.Equal(a.Data, b.Data) {
				t.Fatalf("tensor %d changed: %s vs %s", i, a.String(), b.String())
			}
		}
	})
}
