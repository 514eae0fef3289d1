package safetensors

import (
	"bytes"
	"encoding/binary"
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
		{"header past end", past, "past the end"},
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
