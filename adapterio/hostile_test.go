package adapterio

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/ml/model"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// Tests for inputs a hostile user gives: values that overflow float32, missing module_shapes,
// heads added by merge, output paths that clash with the input.

func readBytes(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestLoadRejectsFloat32Overflow(t *testing.T) {
	good := newAdapter(t, peft.SingLoRA, testSpecs, 2, 2, false, 10, 5, 8)
	cases := []struct {
		name string
		mod  func(t *testing.T, dir string)
		want string
	}{
		{"alpha overflows float32", func(t *testing.T, d string) {
			writeConfig(t, d, func(m map[string]any) { m["lora_alpha"] = 1e308 })
		}, "lora_alpha 1e+308 is +Inf in float32"},
		{"scale underflows float32", func(t *testing.T, d string) {
			writeConfig(t, d, func(m map[string]any) { m["lora_alpha"] = 1.2e-45 })
		}, "lora_alpha/r = 1.2e-45/2 = 6e-46 is 0 in float32"},
		{"F64 tensor outside float32", func(t *testing.T, d string) {
			f, _ := safetensors.Read(filepath.Join(d, WeightsFile))
			v, _ := f.Tensors[2].Float64s()
			v[1] = 1e300
			f.Tensors[2], _ = safetensors.FromFloat64s(f.Tensors[2].Name, safetensors.F64, f.Tensors[2].Shape, v)
			_ = safetensors.Write(filepath.Join(d, WeightsFile), f.Tensors, nil)
		}, "tensor base_model.model.enc.layer.0.up.singlora_A.weight: value 1e+300 at flat index 1 is outside float32's range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "a")
			if err := Save(dir, good); err != nil {
				t.Fatal(err)
			}
			c.mod(t, dir)
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

// TestMergeNonFiniteWritesNothing: an adapter whose merged weights overflow the checkpoint's dtype
// is refused, naming the tensor, and neither the output nor (in place) the base is touched.
func TestMergeNonFiniteWritesNothing(t *testing.T) {
	cases := []struct {
		name  string
		dtype string
		alpha float64
		aVal  float32 // every adapter entry
		head  float32 // modules_to_save value (0: no head)
		want  string
	}{
		{"float32 overflow", safetensors.F32, 3e38, 2, 0, "tensor enc.layer.0.query.weight: the merged value at [0, 0] is +Inf in F32 (merged value 1.2e+39"},
		{"float16 overflow", safetensors.F16, 4, 200, 0, "tensor enc.layer.0.query.weight: the merged value at [0, 0] is +Inf in F16"},
		{"float16 head overflow", safetensors.F16, 4, 0.5, 1e6, "tensor classifier.weight: the merged value at [0, 0] is +Inf in F16"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			base := filepath.Join(tmp, "base.safetensors")
			baseFile(t, base, testSpecs, c.dtype)
			a := newAdapter(t, peft.SingLoRA, testSpecs, 1, c.alpha, false, 0, 0, 3)
			for _, m := range a.Modules {
				for _, mat := range m.Tensors {
					for i := range mat.Data {
						mat.Data[i] = c.aVal
					}
				}
			}
			if c.head != 0 {
				f, _ := safetensors.Read(base)
				h, _ := safetensors.FromFloat32s("classifier.weight", c.dtype, []int{2, 3}, make([]float32, 6))
				_ = safetensors.Write(base, append(f.Tensors, h), f.Metadata)
				a.Config.ModulesToSave = []string{"classifier"}
				a.Saved = []SavedTensor{{Name: "classifier.weight", Matrix: Matrix{Shape: []int{2, 3}, Data: []float32{c.head, 0, 0, 0, 0, 0}}}}
			}
			ad := filepath.Join(tmp, "adapter")
			if err := Save(ad, a); err != nil {
				t.Fatal(err)
			}
			orig := readBytes(t, base)
			out := filepath.Join(tmp, "merged.safetensors")
			for _, dst := range []string{out, base} {
				_, err := MergeFile(base, ad, dst, false)
				if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasSuffix(err.Error(), "nothing was written") {
					t.Fatalf("→ %s: error %v, want %q … nothing was written", dst, err, c.want)
				}
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("output written despite the error: %v", err)
			}
			if readBytes(t, base) != orig {
				t.Error("in-place merge changed the base")
			}
		})
	}
}

// TestMergeShapesFromBase: a SingLoRA adapter without module_shapes merges by reading [out, in]
// from the base, exactly as with them; Load without a base says why it needs them.
func TestMergeShapesFromBase(t *testing.T) {
	for _, layout := range []peft.Layout{peft.OutIn, peft.InOut} {
		t.Run(layout.String(), func(t *testing.T) {
			specs := slices.Clone(testSpecs)
			for i := range specs {
				specs[i].Layout = layout
			}
			tmp := t.TempDir()
			base := filepath.Join(tmp, "base.safetensors")
			baseFile(t, base, specs, safetensors.F32)
			ad := filepath.Join(tmp, "adapter")
			if err := Save(ad, newAdapter(t, peft.SingLoRA, specs, 2, 4, false, 10, 7, 13)); err != nil {
				t.Fatal(err)
			}
			ref := filepath.Join(tmp, "ref.safetensors")
			if _, err := MergeFile(base, ad, ref, false); err != nil {
				t.Fatal(err)
			}
			writeConfig(t, ad, func(m map[string]any) { delete(m, "module_shapes") })
			_, err := Load(ad)
			if !errors.Is(err, ErrNoModuleShape) || !strings.Contains(err.Error(), "module enc.layer.0.query: not listed in module_shapes") {
				t.Fatalf("Load without module_shapes: %v", err)
			}
			out := filepath.Join(tmp, "merged.safetensors")
			rep, err := MergeFile(base, ad, out, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Merged) != 3 || readBytes(t, out) != readBytes(t, ref) {
				t.Errorf("merge without module_shapes differs from merge with them (report %+v)", rep)
			}
			back := filepath.Join(tmp, "back.safetensors")
			if _, err := MergeFile(out, ad, back, true); err != nil {
				t.Fatalf("unmerge without module_shapes: %v", err)
			}
			// A base that lacks a module: the error names the tensor it looked for.
			other := filepath.Join(tmp, "other.safetensors")
			x, _ := safetensors.FromFloat32s("x.weight", safetensors.F32, []int{1}, []float32{1})
			_ = safetensors.Write(other, []safetensors.Tensor{x}, nil)
			_, err = MergeFile(other, ad, filepath.Join(tmp, "x.safetensors"), false)
			if err == nil || !strings.Contains(err.Error(), "not listed in module_shapes, and the base checkpoint has no tensor enc.layer.0.query.weight") {
				t.Errorf("base without the module: %v", err)
			}
		})
	}
}

// TestLoadIntoStoreShapesFromModel: without module_shapes, the model's layers give [out, in].
func TestLoadIntoStoreShapesFromModel(t *testing.T) {
	cfg := peft.DefaultConfig(peft.SingLoRA)
	cfg.Rank = 2
	src := baseStore(t, 1)
	inj, err := peft.Inject(cfg, storeSpecs)
	if err != nil {
		t.Fatal(err)
	}
	if err := inj.Attach(src); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := SaveFromStore(dir, inj, src, ""); err != nil {
		t.Fatal(err)
	}
	writeConfig(t, dir, func(m map[string]any) { delete(m, "module_shapes") })
	dst := baseStore(t, 2)
	if _, err := LoadIntoStore(dir, dst, storeSpecs); err != nil {
		t.Fatalf("load without module_shapes: %v", err)
	}
	for _, sp := range storeSpecs {
		p := sp.ScopePath() + "/" + peft.NameSingLoRAA
		if !slices.Equal(varValues(t, dst, p), varValues(t, src, p)) {
			t.Errorf("%s differs after reload", p)
		}
	}
	missing := slices.Clone(storeSpecs)
	missing[1].Path = "enc.layer.0.other"
	empty := model.NewStore()
	_, err = LoadIntoStore(dir, empty, missing)
	if err == nil || !strings.Contains(err.Error(), "module enc.layer.0.down: not listed in module_shapes, and the model has no linear layer enc.layer.0.down") {
		t.Errorf("model without the module: %v", err)
	}
	if empty.NumVariables() != 0 {
		t.Errorf("failed load created %d variables", empty.NumVariables())
	}
}

// TestUnmergeModulesToSave: unmerge removes the head tensors merge added (recorded in the
// metadata) and keeps, reporting them, those merge wrote over the base's own.
func TestUnmergeModulesToSave(t *testing.T) {
	head := func(name string, n int, v float32) SavedTensor {
		d := make([]float32, n)
		for i := range d {
			d[i] = v + float32(i)
		}
		return SavedTensor{Name: name, Matrix: Matrix{Shape: []int{n}, Data: d}}
	}
	cases := []struct {
		name         string
		baseHead     bool // the base has its own classifier.weight
		dropMetadata bool // the merged file lost the record (merged by another tool)
		added        []string
		removed      []string
		notRestored  []string
	}{
		{"head added", false, false, []string{"classifier.bias", "classifier.weight"}, []string{"classifier.bias", "classifier.weight"}, nil},
		{"head replaced", true, false, []string{"classifier.bias"}, []string{"classifier.bias"}, []string{"classifier.weight"}},
		{"no record", false, true, []string{"classifier.bias", "classifier.weight"}, nil, []string{"classifier.bias", "classifier.weight"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tmp := t.TempDir()
			base := filepath.Join(tmp, "base.safetensors")
			baseFile(t, base, testSpecs, safetensors.F32)
			if c.baseHead {
				f, _ := safetensors.Read(base)
				h, _ := safetensors.FromFloat32s("classifier.weight", safetensors.F32, []int{4}, []float32{9, 9, 9, 9})
				_ = safetensors.Write(base, append(f.Tensors, h), f.Metadata)
			}
			a := newAdapter(t, peft.SingLoRA, testSpecs, 2, 4, false, 0, 0, 5)
			a.Config.ModulesToSave = []string{"classifier"}
			a.Saved = []SavedTensor{head("classifier.bias", 2, 0.5), head("classifier.weight", 4, 1)}
			ad := filepath.Join(tmp, "adapter")
			if err := Save(ad, a); err != nil {
				t.Fatal(err)
			}
			merged := filepath.Join(tmp, "merged.safetensors")
			rep, err := MergeFile(base, ad, merged, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Added, []string{"classifier.bias"}) && c.baseHead || !c.baseHead && len(rep.Added) != 2 {
				t.Errorf("merge added %v", rep.Added)
			}
			mf, _ := safetensors.Read(merged)
			var rec []string
			if err := json.Unmarshal([]byte(mf.Metadata[MergeAddedKey]), &rec); err != nil || !slices.Equal(rec, c.added) {
				t.Fatalf("metadata %s = %q, want %v", MergeAddedKey, mf.Metadata[MergeAddedKey], c.added)
			}
			if c.dropMetadata {
				delete(mf.Metadata, MergeAddedKey)
				_ = safetensors.Write(merged, mf.Tensors, mf.Metadata)
			}
			back := filepath.Join(tmp, "back.safetensors")
			rep, err = MergeFile(merged, ad, back, true)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rep.Removed, c.removed) || !slices.Equal(rep.NotRestored, c.notRestored) {
				t.Errorf("unmerge removed %v and kept %v, want %v and %v", rep.Removed, rep.NotRestored, c.removed, c.notRestored)
			}
			bf, _ := safetensors.Read(base)
			rf, _ := safetensors.Read(back)
			wantNames := bf.Names()
			if c.dropMetadata {
				wantNames = append(wantNames, "classifier.bias", "classifier.weight")
			}
			if !slices.Equal(rf.Names(), wantNames) {
				t.Errorf("unmerged tensors %v, want %v", rf.Names(), wantNames)
			}
			if _, ok := rf.Metadata[MergeAddedKey]; ok || !reflect.DeepEqual(rf.Metadata, bf.Metadata) {
				t.Errorf("unmerged metadata %v, want the base's %v", rf.Metadata, bf.Metadata)
			}
			if w := rf.Get("classifier.weight"); c.baseHead && w != nil {
				v, _ := w.Float32s()
				if !slices.Equal(v, a.Saved[1].Data) {
					t.Errorf("kept head = %v, want the adapter's %v", v, a.Saved[1].Data)
				}
			}
		})
	}
	// A record that is not a list of names is an error, not silently ignored.
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base.safetensors")
	baseFile(t, base, testSpecs, safetensors.F32)
	f, _ := safetensors.Read(base)
	f.Metadata[MergeAddedKey] = "classifier.weight"
	_ = safetensors.Write(base, f.Tensors, f.Metadata)
	ad := filepath.Join(tmp, "adapter")
	_ = Save(ad, newAdapter(t, peft.SingLoRA, testSpecs, 2, 4, false, 0, 0, 5))
	if _, err := MergeFile(base, ad, base, true); err == nil || !strings.Contains(err.Error(), "is not a JSON list of tensor names") {
		t.Errorf("bad record: %v", err)
	}
}

// TestOutputPathsRefused: outputs that would destroy an input, or whose folder is missing, are
// refused before anything is computed, naming the requested path (never a temporary file).
func TestOutputPathsRefused(t *testing.T) {
	tmp := t.TempDir()
	base := filepath.Join(tmp, "base.safetensors")
	baseFile(t, base, testSpecs, safetensors.F32)
	ad := filepath.Join(tmp, "adapter")
	if err := Save(ad, newAdapter(t, peft.SingLoRA, testSpecs, 2, 4, false, 10, 5, 2)); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(ad, link); err != nil {
		t.Fatal(err)
	}
	cfgBefore, wBefore := readBytes(t, filepath.Join(ad, ConfigFile)), readBytes(t, filepath.Join(ad, WeightsFile))
	missing := filepath.Join(tmp, "nope", "merged.safetensors")
	cases := []struct {
		name string
		run  func() error
		want string
	}{
		{"export into itself", func() error { _, err := ExportLoRAFolder(ad, ad); return err }, "is the source adapter folder"},
		{"export into itself, other spelling", func() error { _, err := ExportLoRAFolder(ad, ad+"/../adapter/."); return err }, "is the source adapter folder"},
		{"export into itself through a link", func() error { _, err := ExportLoRAFolder(ad, link); return err }, "is the source adapter folder"},
		{"export into a missing folder", func() error { _, err := ExportLoRAFolder(ad, filepath.Join(tmp, "nope", "lora")); return err },
			"adapter folder " + filepath.Join(tmp, "nope", "lora") + ": the folder " + filepath.Join(tmp, "nope") + " does not exist"},
		{"merge into the adapter's weights", func() error { _, err := MergeFile(base, ad, filepath.Join(link, WeightsFile), false); return err },
			"is the adapter's own adapter_model.safetensors"},
		{"merge into a missing folder", func() error { _, err := MergeFile(base, ad, missing, false); return err },
			"output " + missing + ": the folder " + filepath.Join(tmp, "nope") + " does not exist"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.run()
			if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), ".tmp-") {
				t.Fatalf("error %v, want %q (and no temporary file named)", err, c.want)
			}
			if readBytes(t, filepath.Join(ad, ConfigFile)) != cfgBefore || readBytes(t, filepath.Join(ad, WeightsFile)) != wBefore {
				t.Fatal("the adapter changed")
			}
		})
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 3 {
		t.Errorf("refused writes left entries: %v", ents)
	}
	if a, err := Load(ad); err != nil || a.Config.PeftType != TypeSingLoRA || math.IsNaN(a.Config.Scale()) {
		t.Errorf("adapter after refusals: %v", err)
	}
}
