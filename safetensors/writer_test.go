package safetensors

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// headerOnly returns ts without their data, and their bytes concatenated in buffer order.
func headerOnly(ts []Tensor) ([]Tensor, []byte) {
	var data []byte
	out := make([]Tensor, len(ts))
	for i, t := range ts {
		data = append(data, t.Data...)
		t.Data = nil
		out[i] = t
	}
	return out, data
}

// TestWriterMatchesMarshal: a file streamed through Writer in pieces of every size from 1 byte
// (pieces that end inside a tensor and pieces that span several, across an empty tensor) is
// byte for byte what Marshal encodes, and Open reads it back.
func TestWriterMatchesMarshal(t *testing.T) {
	ts, md := sample(t)
	want, err := Marshal(ts, md)
	if err != nil {
		t.Fatal(err)
	}
	hdr, data := headerOnly(ts)
	dir := t.TempDir()
	for _, metadata := range []map[string]string{md, nil} {
		if metadata == nil {
			if want, err = Marshal(ts, nil); err != nil {
				t.Fatal(err)
			}
		}
		for piece := 1; piece <= len(data)+1; piece++ {
			p := filepath.Join(dir, "m.safetensors")
			w, err := Create(p, hdr, metadata)
			if err != nil {
				t.Fatal(err)
			}
			for rest := data; len(rest) > 0; {
				n := min(piece, len(rest))
				if k, err := w.Write(rest[:n]); err != nil || k != n {
					t.Fatalf("piece %d: Write = %d, %v", piece, k, err)
				}
				rest = rest[n:]
			}
			if err := w.Close(); err != nil {
				t.Fatalf("piece %d: Close: %v", piece, err)
			}
			got, _ := os.ReadFile(p)
			if !bytes.Equal(got, want) {
				t.Fatalf("piece %d, metadata %v: file differs from Marshal's encoding", piece, metadata != nil)
			}
		}
	}
	r, err := Open(filepath.Join(dir, "m.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, x := range ts {
		back, err := r.Tensor(x.Name)
		if err != nil || !bytes.Equal(back.Data, x.Data) || back.DType != x.DType {
			t.Errorf("tensor %s read back as %v, %v", x.Name, back, err)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %d entries, want the one file", len(ents))
	}
}

// TestWriterErrors: a bad header is refused before any file exists; too many bytes, too few
// bytes at Close, and Abort leave an existing file unchanged and no temporary behind; errors name
// the path and the culprit.
func TestWriterErrors(t *testing.T) {
	ts, md := sample(t)
	hdr, data := headerOnly(ts)
	dir := t.TempDir()
	p := filepath.Join(dir, "m.safetensors")
	if err := Write(p, ts, md); err != nil {
		t.Fatal(err)
	}
	old, _ := os.ReadFile(p)
	for _, tc := range []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"duplicate", []Tensor{{Name: "a", DType: F32, Shape: []int{1}}, {Name: "a", DType: F32, Shape: []int{2}}}, `duplicate tensor name "a"`},
		{"dtype", []Tensor{{Name: "a", DType: "F12", Shape: []int{1}}}, `tensor "a": unknown dtype "F12"`},
		{"negative", []Tensor{{Name: "a", DType: F32, Shape: []int{-1}}}, "negative dimension"},
		{"reserved", []Tensor{{Name: MetadataKey, DType: F32}}, "reserved"},
		{"data", []Tensor{{Name: "a", DType: F32, Shape: []int{1}, Data: make([]byte, 4)}}, "header only"},
	} {
		if _, err := Create(p, tc.tensors, nil); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: Create error %v, want %q naming %s", tc.name, err, tc.want, p)
		}
	}
	if _, err := Create(filepath.Join(dir, "nope", "x.safetensors"), hdr, md); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing folder: %v", err)
	}

	w, err := Create(p, hdr, md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(append(append([]byte(nil), data...), 0)); err == nil || !strings.Contains(err.Error(), "beyond the") {
		t.Errorf("too many bytes: %v", err)
	}
	if err := w.Close(); err == nil {
		t.Error("Close after a failed Write succeeded")
	}

	w, err = Create(p, hdr, md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:25]); err != nil { // a.weight (24 bytes) and 1 of b's 6
		t.Fatal(err)
	}
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), `tensor "b": only 1 of its 6 bytes were written`) {
		t.Errorf("too few bytes: %v", err)
	}

	w, err = Create(p, hdr, md)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	w.Abort()
	if err := w.Close(); err == nil {
		t.Error("Close after Abort succeeded")
	}

	if now, _ := os.ReadFile(p); !bytes.Equal(now, old) {
		t.Error("a failed or aborted Writer changed the existing file")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("folder holds %d entries, want the one file (temporaries left behind)", len(ents))
	}
}
