package use

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func writeTFJS(t *testing.T, payload []byte, split int) string {
	t.Helper()
	dir := t.TempDir()
	manifest := `{"modelTopology":{"node":[{"name":"x","op":"Placeholder"},{"name":"r","op":"Relu","input":["x"]}]},
"weightsManifest":[{"paths":["s1","s2"],"weights":[
 {"name":"w","shape":[2,3],"dtype":"float32"},{"name":"k","shape":[],"dtype":"int32"}]}]}`
	if err := os.WriteFile(filepath.Join(dir, "model.json"), []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "s1"), payload[:split], 0o644)
	os.WriteFile(filepath.Join(dir, "s2"), payload[split:], 0o644)
	return dir
}

func TestLoadTFJS(t *testing.T) {
	var payload []byte
	for _, v := range []float32{1, 2, 3, 4, 5, 6} {
		payload = binary.LittleEndian.AppendUint32(payload, math.Float32bits(v))
	}
	minus7 := int32(-7)
	payload = binary.LittleEndian.AppendUint32(payload, uint32(minus7))
	m, err := LoadTFJS(writeTFJS(t, payload, 10)) // the split falls inside a value
	if err != nil {
		t.Fatal(err)
	}
	w, err := m.Float32("w", 2, 3)
	if err != nil || !reflect.DeepEqual(w, []float32{1, 2, 3, 4, 5, 6}) {
		t.Fatalf("w = %v, %v", w, err)
	}
	if k, err := m.Scalar("k"); err != nil || k != -7 {
		t.Fatalf("k = %v, %v", k, err)
	}
	if m.Nodes["r"].Op != "Relu" || m.Nodes["r"].Input[0] != "x" {
		t.Fatalf("nodes: %+v", m.Nodes)
	}
	if _, err := m.Float32("w", 3, 2); err == nil {
		t.Fatal("wrong shape accepted")
	}
	if got := transpose([]float32{1, 2, 3, 4, 5, 6}, 2, 3); !reflect.DeepEqual(got, []float32{1, 4, 2, 5, 3, 6}) {
		t.Fatalf("transpose = %v", got)
	}
	if _, err := LoadTFJS(writeTFJS(t, payload[:len(payload)-1], 10)); err == nil || !strings.Contains(err.Error(), "too short") {
		t.Fatalf("short shards: err = %v", err)
	}
	if _, err := LoadTFJS(writeTFJS(t, append(payload, 0, 0, 0, 0), 10)); err == nil || !strings.Contains(err.Error(), "left over") {
		t.Fatalf("long shards: err = %v", err)
	}
}
