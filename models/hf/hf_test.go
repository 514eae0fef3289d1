package hf_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/core/tensors"
	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/models/hf"
	"github.com/singlora/singlora/models/hf/hftest"
	"github.com/singlora/singlora/peft"
)

// TestLoadStreams: every dtype and shard layout loads exactly the checkpoint's (rounded) values
// into float32 variables, tensor by tensor from the open files.
func TestLoadStreams(t *testing.T) {
	for _, dtype := range []string{"F32", "F16", "BF16"} {
		for _, shards := range []int{1, 3} {
			t.Run(dtype+"/"+string(rune('0'+shards)), func(t *testing.T) {
				c := hftest.New(7)
				c.Rand("a.weight", 0, 1, 5, 3)
				c.Rand("a.bias", 0, 1, 5)
				c.Rand("b.weight", 0, 1, 4)
				c.Rand("c.weight", 0, 1, 2, 2)
				dir := t.TempDir()
				if err := c.Write(dir, map[string]any{"model_type": "test"}, dtype, shards); err != nil {
					t.Fatal(err)
				}
				w, err := hf.OpenWeights(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
				store := model.NewStore()
				if err := w.LoadLinear(store, peft.LinearSpec{Path: "a", In: 3, Out: 5, Bias: true}); err != nil {
					t.Fatal(err)
				}
				for _, l := range []struct {
					name  string
					shape []int
				}{{"b.weight", []int{4}}, {"c.weight", []int{2, 2}}} {
					if err := w.Load(store, l.name, l.shape...); err != nil {
						t.Fatal(err)
					}
				}
				for _, name := range []string{"a.weight", "a.bias", "b.weight", "c.weight"} {
					v := store.GetVariable(hf.VariablePath(name))
					if v == nil {
						t.Fatalf("%s not loaded", name)
					}
					val, err := v.Value()
					if err != nil {
						t.Fatal(err)
					}
					got := tensors.MustCopyFlatData[float32](val)
					want := c.Get(name)
					for i := range want {
						if got[i] != float32(want[i]) {
							t.Fatalf("%s[%d] = %v, want %v", name, i, got[i], want[i])
						}
					}
				}
			})
		}
	}
}

// TestOpenWeightsErrors: what is wrong with a folder is said, naming the file or tensor.
func TestOpenWeightsErrors(t *testing.T) {
	write := func(t *testing.T, shards int) string {
		c := hftest.New(1)
		c.Rand("x.weight", 0, 1, 2, 2)
		c.Rand("y.weight", 0, 1, 2)
		dir := t.TempDir()
		if err := c.Write(dir, map[string]any{}, "F32", shards); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	editIndex := func(t *testing.T, dir string, edit func(m map[string]string)) {
		p := filepath.Join(dir, hf.IndexFile)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			t.Fatal(err)
		}
		edit(idx.WeightMap)
		nb, _ := json.Marshal(idx)
		if err := os.WriteFile(p, nb, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) string
		want  string
	}{
		{"empty folder", func(t *testing.T) string { return t.TempDir() }, "no model.safetensors or model.safetensors.index.json"},
		{"missing shard", func(t *testing.T) string {
			d := write(t, 2)
			_ = os.Remove(filepath.Join(d, "model-00002-of-00002.safetensors"))
			return d
		}, "is missing"},
		{"tensor in the wrong shard", func(t *testing.T) string {
			d := write(t, 2)
			editIndex(t, d, func(m map[string]string) { m["x.weight"] = "model-00002-of-00002.safetensors" })
			return d
		}, "which does not contain it"},
		{"path in the index", func(t *testing.T) string {
			d := write(t, 2)
			editIndex(t, d, func(m map[string]string) { m["x.weight"] = "../x.safetensors" })
			return d
		}, "not a file name in the folder"},
		{"not safetensors", func(t *testing.T) string {
			d := t.TempDir()
			_ = os.WriteFile(filepath.Join(d, hf.WeightsFile), []byte(`{"oops": true}`), 0o644)
			return d
		}, "not a safetensors file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := hf.OpenWeights(tc.setup(t))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
		})
	}
	dir := write(t, 1)
	w, err := hf.OpenWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	store := model.NewStore()
	for _, tc := range []struct {
		name  string
		shape []int
		want  string
	}{
		{"z.weight", []int{2}, `missing tensor "z.weight"`},
		{"x.weight", []int{4}, "has shape [2 2] in the checkpoint, the config implies [4]"},
	} {
		if err := w.Load(store, tc.name, tc.shape...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%s, %v): %v, want %q", tc.name, tc.shape, err, tc.want)
		}
	}
}
