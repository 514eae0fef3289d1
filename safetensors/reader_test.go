package safetensors

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestOpenMatchesParse: Open (header only, data read on demand) accepts exactly what Parse
// accepts, with the same errors (prefixed by the path), and reads the same bytes.
func TestOpenMatchesParse(t *testing.T) {
	good, md := sample(t)
	whole, err := Marshal(good, md)
	if err != nil {
		t.Fatal(err)
	}
	past := make([]byte, 16)
	binary.LittleEndian.PutUint64(past, 100)
	small := rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}`, make([]byte, 8))
	inputs := map[string][]byte{
		"whole":            whole,
		"small":            small,
		"empty":            nil,
		"short":            []byte{1, 2, 3},
		"header past end":  past,
		"truncated buffer": small[:len(small)-1],
		"extra bytes":      append(append([]byte{}, small...), 0),
		"json":             []byte(`{"peft_type": "LORA"}`),
		"png":              append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 40)...),
		"overlap":          rawFile(`{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 8)),
		"out of range":     rawFile(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, make([]byte, 4)),
		"big header":       rawFile(`{"__metadata__":{"k":"`+strings.Repeat("v", 2000)+`"},"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}}`, []byte{1, 2, 3}),
	}
	dir := t.TempDir()
	for name, b := range inputs {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			want, perr := Parse(b)
			r, oerr := Open(path)
			if (perr == nil) != (oerr == nil) {
				t.Fatalf("Parse error %v, Open error %v", perr, oerr)
			}
			if perr != nil {
				if oerr.Error() != path+": "+perr.Error() {
					t.Fatalf("Open error %q, want %q", oerr, path+": "+perr.Error())
				}
				return
			}
			defer r.Close()
			if len(r.Tensors) != len(want.Tensors) || len(r.Metadata) != len(want.Metadata) {
				t.Fatalf("Open lists %d tensors, Parse %d", len(r.Tensors), len(want.Tensors))
			}
			for _, wt := range want.Tensors {
				got, err := r.Tensor(wt.Name)
				if err != nil {
					t.Fatal(err)
				}
				if got.DType != wt.DType || !bytes.Equal(got.Data, wt.Data) || len(got.Shape) != len(wt.Shape) {
					t.Fatalf("tensor %s: Open read %s, Parse %s", wt.Name, got, &wt)
				}
			}
			if err := r.ReadData(want.Tensors[0].Name, make([]byte, 1+len(want.Tensors[0].Data))); err == nil {
				t.Error("ReadData into a buffer of the wrong size succeeded")
			}
			if r.Lookup("no such tensor") != nil {
				t.Error("Lookup of a missing tensor")
			}
		})
	}
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "folder") {
		t.Errorf("Open of a folder: %v", err)
	}
}
