package gguf

import (
	"bytes"
	"reflect"
	"testing"
)

// FuzzRead: Parse never panics, and a file it accepts marshals back to bytes that parse to the
// same key-values and tensors (and, at the same alignment, to the same bytes when the input had
// no stray padding).
func FuzzRead(f *testing.F) {
	kvs, tensors := sample(f)
	for _, k := range [][]KV{kvs, nil, {{KeyAlignment, uint32(8)}}} {
		b, err := Marshal(k, tensors)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := Parse(b)
		if err != nil {
			return
		}
		b2, err := Marshal(g.KVs, g.Tensors)
		if err != nil {
			t.Fatalf("a parsed file does not marshal: %v", err)
		}
		g2, err := Parse(b2)
		if err != nil {
			t.Fatalf("a re-marshalled file does not parse: %v", err)
		}
		if !reflect.DeepEqual(g.KVs, g2.KVs) && !nanEqual(g.KVs, g2.KVs) {
			t.Fatalf("key-values differ after a round trip")
		}
		if len(g.Tensors) != len(g2.Tensors) {
			t.Fatalf("%d tensors, %d after a round trip", len(g.Tensors), len(g2.Tensors))
		}
		for i := range g.Tensors {
			if !reflect.DeepEqual(g.Tensors[i].TensorInfo, g2.Tensors[i].TensorInfo) || !bytes.Equal(g.Tensors[i].Data, g2.Tensors[i].Data) {
				t.Fatalf("tensor %d differs after a round trip", i)
			}
		}
	})
}

// nanEqual compares key-values by their encoding (NaN floats are not DeepEqual to themselves).
func nanEqual(a, b []KV) bool {
	ha, err1 := Marshal(a, nil)
	hb, err2 := Marshal(b, nil)
	return err1 == nil && err2 == nil && bytes.Equal(ha, hb)
}
