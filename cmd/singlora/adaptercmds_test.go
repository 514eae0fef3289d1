package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/singlora/singlora/adapterio"
	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// fixture writes a base checkpoint with one in>out layer "blk.proj" (F16 weight [3, 5]) and an
// unrelated tensor, and a SingLoRA adapter (r=2, α=4, T=10, 5 steps → u=0.5) for it.
func fixture(t *testing.T) (dir, base, adapter string, w0, A []float32) {
	t.Helper()
	dir = t.TempDir()
	w0 = []float32{0.5, -1, 0.25, 2, -0.75, 1.5, 0.125, -2, 1, 0, -0.5, 0.75, 1.25, -1.5, 0.375}
	wt, err := safetensors.FromFloat32s("blk.proj.weight", safetensors.F16, []int{3, 5}, w0)
	if err != nil {
		t.Fatal(err)
	}
	other, _ := safetensors.FromFloat32s("blk.norm.weight", safetensors.F32, []int{5}, []float32{1, 2, 3, 4, 5})
	base = filepath.Join(dir, "base.safetensors")
	if err := safetensors.Write(base, []safetensors.Tensor{other, wt}, map[string]string{"format": "pt"}); err != nil {
		t.Fatal(err)
	}
	A = []float32{0.1, 0.2, -0.3, 0.4, 0.5, -0.6, 0.7, 0.8, -0.9, 1.0} // [5, 2]
	a := &adapterio.Adapter{
		Config: &adapterio.Config{PeftType: adapterio.TypeSingLoRA, Settings: adapterio.Settings{R: 2, LoraAlpha: 4, TargetModules: []string{"proj"}, Init: "theory"},
			RampUpSteps: 10, TrainedSteps: 5},
		Modules: []*adapterio.Module{{Path: "blk.proj", In: 5, Out: 3, Tensors: map[string]*adapterio.Matrix{
			peft.NameSingLoRAA: {Shape: []int{5, 2}, Data: A}}}},
	}
	adapter = filepath.Join(dir, "adapter")
	if err := adapterio.Save(adapter, a); err != nil {
		t.Fatal(err)
	}
	return
}

func TestMergeCommand(t *testing.T) {
	dir, base, adapter, w0, A := fixture(t)
	out := filepath.Join(dir, "merged.safetensors")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "merged 1 weights") {
		t.Errorf("output %q", buf.String())
	}
	f, err := safetensors.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	w := f.Get("blk.proj.weight")
	if w == nil || w.DType != safetensors.F16 {
		t.Fatalf("merged weight missing or not F16: %v", w)
	}
	got, _ := w.Float32s()
	s, u := 4.0/2, 0.5
	for o := range 3 {
		for i := range 5 {
			d := s * u * (float64(A[o*2])*float64(A[i*2]) + float64(A[o*2+1])*float64(A[i*2+1]))
			want := safetensors.F16ToFloat32(safetensors.Float32ToF16(float32(float64(w0[o*5+i]) + d)))
			if got[o*5+i] != want {
				t.Errorf("W[%d,%d] = %v, want %v", o, i, got[o*5+i], want)
			}
		}
	}
	if n, _ := f.Get("blk.norm.weight").Float32s(); n[4] != 5 || f.Metadata["format"] != "pt" {
		t.Error("other tensor or metadata not copied")
	}
	back := filepath.Join(dir, "back.safetensors")
	if err := runMerge([]string{"--base", out, "--adapter", adapter, "--out", back, "--unmerge"}, &buf); err != nil {
		t.Fatal(err)
	}
	bf, _ := safetensors.Read(back)
	bw, _ := bf.Get("blk.proj.weight").Float32s()
	for i := range w0 {
		if math.Abs(float64(bw[i]-w0[i])) > 2e-3*(1+math.Abs(float64(w0[i]))) {
			t.Errorf("unmerged[%d] = %v, want %v", i, bw[i], w0[i])
		}
	}
	// Errors: missing flags; a base without the module → nothing written.
	if err := runMerge([]string{"--base", base}, &buf); err == nil {
		t.Error("missing flags accepted")
	}
	other := filepath.Join(dir, "other.safetensors")
	x, _ := safetensors.FromFloat32s("x.weight", safetensors.F32, []int{1}, []float32{1})
	_ = safetensors.Write(other, []safetensors.Tensor{x}, nil)
	bad := filepath.Join(dir, "bad.safetensors")
	err = runMerge([]string{"--base", other, "--adapter", adapter, "--out", bad}, &buf)
	if err == nil || !strings.Contains(err.Error(), "blk.proj.weight") {
		t.Errorf("error %v", err)
	}
	if _, serr := os.Stat(bad); serr == nil {
		t.Error("output written on error")
	}
}

func TestExportCommand(t *testing.T) {
	dir, _, adapter, _, A := fixture(t)
	out := filepath.Join(dir, "lora")
	var buf bytes.Buffer
	if err := runExport([]string{"--format", "lora", "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatal(err)
	}
	cb, _ := os.ReadFile(filepath.Join(out, adapterio.ConfigFile))
	var cfg map[string]any
	if err := json.Unmarshal(cb, &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg["peft_type"] != "LORA" || cfg["lora_alpha"] != 2.0 || cfg["r"] != 2.0 || cfg["use_rslora"] != false {
		t.Errorf("config %s", cb)
	}
	f, err := safetensors.Read(filepath.Join(out, adapterio.WeightsFile))
	if err != nil {
		t.Fatal(err)
	}
	la, _ := f.Get("base_model.model.blk.proj.lora_A.weight").Float32s() // [2, 5]
	lb, _ := f.Get("base_model.model.blk.proj.lora_B.weight").Float32s() // [3, 2]
	for o := range 3 {
		for i := range 5 {
			ba := float64(lb[o*2])*float64(la[i]) + float64(lb[o*2+1])*float64(la[5+i])
			d := 2 * 0.5 * (float64(A[o*2])*float64(A[i*2]) + float64(A[o*2+1])*float64(A[i*2+1]))
			if math.Abs(ba-d) > 1e-6 {
				t.Errorf("B·A[%d,%d] = %v, ΔW = %v", o, i, ba, d)
			}
		}
	}
	if err := runExport([]string{"--format", "gguf", "--adapter", adapter, "--out", out + "2"}, &buf); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestInspectCommand(t *testing.T) {
	_, base, adapter, _, _ := fixture(t)
	var buf bytes.Buffer
	if err := runInspect([]string{adapter}, &buf); err != nil {
		t.Fatal(err)
	}
	s := buf.String()
	for _, want := range []string{"method:       singlora", "rank:         2", "scaling:      2 (alpha/r)", "ramp T = 10, u = 0.5",
		"trained steps: 5", "blk.proj", "adapter params: 10 in 1 modules", "base_model.model.blk.proj.singlora_A.weight", "F32", "[5, 2]"} {
		if !strings.Contains(s, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, s)
		}
	}
	// PEFT's narrowing keys are shown, in their PEFT forms too.
	editConfig(t, adapter, func(m map[string]any) {
		m["exclude_modules"], m["layers_to_transform"], m["layers_pattern"] = ".*\\.head", 3, "layers"
	})
	buf.Reset()
	if err := runInspect([]string{adapter}, &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"excluded:     re:.*\\.head", "layers:       [3] (layers_pattern: layers)"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, buf.String())
		}
	}
	// Per-module α (alpha_pattern) and the bias setting: the module table gains r, alpha, scaling.
	editConfig(t, adapter, func(m map[string]any) {
		delete(m, "layers_to_transform")
		delete(m, "exclude_modules")
		delete(m, "layers_pattern")
		m["alpha_pattern"], m["bias"] = map[string]any{"proj": 6}, "lora_only"
	})
	buf.Reset()
	if err := runInspect([]string{adapter}, &buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alpha_pattern: proj=6", "bias:         lora_only", "r   alpha  scaling", "blk.proj                                                 5       3     2       6        3"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("inspect output lacks %q:\n%s", want, buf.String())
		}
	}
	buf.Reset()
	if err := runInspect([]string{base}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "2 tensors, 20 params") || !strings.Contains(buf.String(), "F16") {
		t.Errorf("inspect file output:\n%s", buf.String())
	}
	if err := runInspect([]string{filepath.Join(adapter, "nope")}, &buf); err == nil {
		t.Error("missing path accepted")
	}
}

// editConfig rewrites the adapter's adapter_config.json through edit.
func editConfig(t *testing.T, adapter string, edit func(m map[string]any)) {
	t.Helper()
	p := filepath.Join(adapter, adapterio.ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, _ = json.Marshal(m)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileText(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestExportRefusesItsSource: --out naming the --adapter folder (in any spelling) is refused and
// the SingLoRA adapter stays as it was.
func TestExportRefusesItsSource(t *testing.T) {
	dir, _, adapter, _, _ := fixture(t)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(adapter, link); err != nil {
		t.Fatal(err)
	}
	cfgBefore := fileText(t, filepath.Join(adapter, adapterio.ConfigFile))
	wBefore := fileText(t, filepath.Join(adapter, adapterio.WeightsFile))
	for _, out := range []string{adapter, adapter + "/", filepath.Join(adapter, "..", "adapter"), link} {
		var buf bytes.Buffer
		err := runExport([]string{"--adapter", adapter, "--out", out}, &buf)
		want := "--out " + out + " is the --adapter folder " + adapter + ": exporting there would replace the SingLoRA adapter"
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--out %s: error %v, want %q", out, err, want)
		}
	}
	if fileText(t, filepath.Join(adapter, adapterio.ConfigFile)) != cfgBefore || fileText(t, filepath.Join(adapter, adapterio.WeightsFile)) != wBefore {
		t.Fatal("the adapter changed")
	}
	if a, err := adapterio.Load(adapter); err != nil || a.Config.PeftType != adapterio.TypeSingLoRA {
		t.Fatalf("adapter no longer a SingLoRA adapter: %v", err)
	}
}

// TestMergeCommandRefuses: hostile inputs fail with a message naming the culprit, writing nothing.
func TestMergeCommandRefuses(t *testing.T) {
	cases := []struct {
		name string
		prep func(t *testing.T, dir, base, adapter string) (out string)
		want string
	}{
		{"alpha overflows float32", func(t *testing.T, dir, base, adapter string) string {
			editConfig(t, adapter, func(m map[string]any) { m["lora_alpha"] = 1e308 })
			return filepath.Join(dir, "merged.safetensors")
		}, "lora_alpha 1e+308 is +Inf in float32"},
		{"merged weight overflows F16", func(t *testing.T, dir, base, adapter string) string {
			editConfig(t, adapter, func(m map[string]any) { m["lora_alpha"] = 3e5 })
			return filepath.Join(dir, "merged.safetensors")
		}, "tensor blk.proj.weight: the merged value at [2, 4] is -Inf in F16"},
		{"output folder missing", func(t *testing.T, dir, base, adapter string) string {
			return filepath.Join(dir, "nope", "merged.safetensors")
		}, "--out DIR/nope/merged.safetensors: the folder DIR/nope does not exist (create it first)"},
		{"output is the adapter's weights", func(t *testing.T, dir, base, adapter string) string {
			return filepath.Join(adapter, adapterio.WeightsFile)
		}, "is the adapter's own adapter_model.safetensors"},
		{"base is not safetensors", func(t *testing.T, dir, base, adapter string) string {
			_ = os.WriteFile(base, []byte(`{"not": "tensors"}`), 0o644)
			return filepath.Join(dir, "merged.safetensors")
		}, "base.safetensors: not a safetensors file (it looks like JSON text"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir, base, adapter, _, _ := fixture(t)
			out := c.prep(t, dir, base, adapter)
			adapterBefore := fileText(t, filepath.Join(adapter, adapterio.WeightsFile))
			var buf bytes.Buffer
			err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", out}, &buf)
			want := strings.ReplaceAll(c.want, "DIR", dir)
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), ".tmp-") {
				t.Fatalf("error %v, want %q (and no temporary file named)", err, want)
			}
			if out != filepath.Join(adapter, adapterio.WeightsFile) {
				if _, serr := os.Stat(out); serr == nil {
					t.Error("output written despite the error")
				}
			}
			if fileText(t, filepath.Join(adapter, adapterio.WeightsFile)) != adapterBefore {
				t.Error("the adapter's weights changed")
			}
		})
	}
}

// TestMergeWithoutModuleShapes: merge reads [out, in] from --base; export and inspect, which have
// no base, say that they need module_shapes and why.
func TestMergeWithoutModuleShapes(t *testing.T) {
	dir, base, adapter, _, _ := fixture(t)
	ref := filepath.Join(dir, "ref.safetensors")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", ref}, &buf); err != nil {
		t.Fatal(err)
	}
	editConfig(t, adapter, func(m map[string]any) { delete(m, "module_shapes") })
	out := filepath.Join(dir, "merged.safetensors")
	if err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", out}, &buf); err != nil {
		t.Fatalf("merge without module_shapes: %v", err)
	}
	if fileText(t, out) != fileText(t, ref) {
		t.Error("merge without module_shapes differs from merge with them")
	}
	err := runExport([]string{"--adapter", adapter, "--out", filepath.Join(dir, "lora")}, &buf)
	if !errors.Is(err, adapterio.ErrNoModuleShape) || !strings.Contains(err.Error(), "module blk.proj: not listed in module_shapes") ||
		!strings.Contains(err.Error(), "export has no base checkpoint to read each module's [out, in] from") {
		t.Errorf("export: %v", err)
	}
	err = runInspect([]string{adapter}, &buf)
	if !errors.Is(err, adapterio.ErrNoModuleShape) || !strings.Contains(err.Error(), "inspect has no base checkpoint") {
		t.Errorf("inspect: %v", err)
	}
}

// TestUnmergeCommandDropsAddedHead: the head merge added to a base without one is gone after
// --unmerge, and the output says so.
func TestUnmergeCommandDropsAddedHead(t *testing.T) {
	dir, base, adapter, _, _ := fixture(t)
	a, err := adapterio.Load(adapter)
	if err != nil {
		t.Fatal(err)
	}
	a.Config.ModulesToSave = []string{"head"}
	a.Saved = []adapterio.SavedTensor{{Name: "head.weight", Matrix: adapterio.Matrix{Shape: []int{2, 3}, Data: []float32{1, 2, 3, 4, 5, 6}}}}
	if err := adapterio.Save(adapter, a); err != nil {
		t.Fatal(err)
	}
	merged := filepath.Join(dir, "merged.safetensors")
	var buf bytes.Buffer
	if err := runMerge([]string{"--base", base, "--adapter", adapter, "--out", merged}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "replaced 0 and added 1 modules_to_save tensors") {
		t.Errorf("merge output %q", buf.String())
	}
	if f, _ := safetensors.Read(merged); f.Get("head.weight") == nil {
		t.Fatal("merge did not add the head")
	}
	buf.Reset()
	back := filepath.Join(dir, "back.safetensors")
	if err := runMerge([]string{"--unmerge", "--base", merged, "--adapter", adapter, "--out", back}, &buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "unmerged 1 weights, removed 1 modules_to_save tensors merge had added (head.weight), copied 1 tensors unchanged") {
		t.Errorf("unmerge output %q", buf.String())
	}
	bf, _ := safetensors.Read(base)
	rf, _ := safetensors.Read(back)
	if !slices.Equal(rf.Names(), bf.Names()) || !reflect.DeepEqual(rf.Metadata, bf.Metadata) {
		t.Errorf("unmerged file has %v %v, the base %v %v", rf.Names(), rf.Metadata, bf.Names(), bf.Metadata)
	}
}

func TestInspectNotSafetensors(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "config.json")
	_ = os.WriteFile(p, []byte(`{"peft_type": "LORA", "r": 8}`), 0o644)
	var buf bytes.Buffer
	err := runInspect([]string{p}, &buf)
	if err == nil || !strings.HasPrefix(err.Error(), p+": not a safetensors file (it looks like JSON text") {
		t.Errorf("error %v", err)
	}
}
