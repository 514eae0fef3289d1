package adapterio

import (
	"fmt"
	"slices"

	"github.com/singlora/singlora/peft"
	"github.com/singlora/singlora/safetensors"
)

// MergeReport says what MergeFile changed.
type MergeReport struct {
	Merged   []string // base tensor names updated with an adapter's ΔW
	Replaced []string // modules_to_save tensors written over the base's
	Added    []string // modules_to_save tensors the base did not have
	Kept     int      // tensors copied unchanged
}

// MergeTensors merges (or unmerges) adapter a into the tensors of a checkpoint and returns the new
// tensor list (same order, modules_to_save tensors absent from the base appended). Each adapted
// module "<path>" needs the base tensor "<path>.weight" of shape [out, in] (or [in, out] for
// fan_in_fan_out modules). Weights are merged in float64 and written back in their own dtype (F16
// and BF16 rounded to nearest even through float32). Unmerge subtracts the same frozen ΔW and
// leaves modules_to_save tensors as they are (their originals are not in the adapter).
func MergeTensors(a *Adapter, base []safetensors.Tensor, unmerge bool) ([]safetensors.Tensor, MergeReport, error) {
	var rep MergeReport
	out := slices.Clone(base)
	index := map[string]int{}
	for i, t := range out {
		index[t.Name] = i
	}
	changed := map[int]bool{}
	for _, m := range a.Modules {
		name := m.Path + ".weight"
		i, ok := index[name]
		if !ok {
			return nil, rep, fmt.Errorf("module %s: the base has no tensor %s", m.Path, name)
		}
		t := out[i]
		want := []int{m.Out, m.In}
		if m.Layout == peft.InOut {
			want = []int{m.In, m.Out}
		}
		if !slices.Equal(t.Shape, want) {
			return nil, rep, fmt.Errorf("module %s: base tensor %s has shape %v, the adapter needs %v (in=%d, out=%d, layout %s)", m.Path, name, t.Shape, want, m.In, m.Out, m.Layout)
		}
		if !safetensors.IsFloat(t.DType) {
			return nil, rep, fmt.Errorf("module %s: base tensor %s has dtype %s, not a float type", m.Path, name, t.DType)
		}
		w0, err := t.Float64s()
		if err != nil {
			return nil, rep, err
		}
		w, err := MergeWeight(a, m, w0, unmerge)
		if err != nil {
			return nil, rep, err
		}
		nt, err := safetensors.FromFloat64s(name, t.DType, t.Shape, w)
		if err != nil {
			return nil, rep, err
		}
		out[i] = nt
		changed[i] = true
		rep.Merged = append(rep.Merged, name)
	}
	if !unmerge {
		for _, s := range a.Saved {
			if i, ok := index[s.Name]; ok {
				t := out[i]
				if !slices.Equal(t.Shape, s.Shape) {
					return nil, rep, fmt.Errorf("module to save %s: base shape %v, adapter shape %v", s.Name, t.Shape, s.Shape)
				}
				dtype := t.DType
				if !safetensors.IsFloat(dtype) {
					return nil, rep, fmt.Errorf("module to save %s: base dtype %s is not a float type", s.Name, dtype)
				}
				nt, err := safetensors.FromFloat32s(s.Name, dtype, s.Shape, s.Data)
				if err != nil {
					return nil, rep, err
				}
				out[i] = nt
				changed[i] = true
				rep.Replaced = append(rep.Replaced, s.Name)
			} else {
				nt, err := safetensors.FromFloat32s(s.Name, safetensors.F32, s.Shape, s.Data)
				if err != nil {
					return nil, rep, err
				}
				out = append(out, nt)
				rep.Added = append(rep.Added, s.Name)
			}
		}
	}
	rep.Kept = len(base) - len(changed)
	return out, rep, nil
}

// MergeFile merges (or with unmerge, unmerges) the adapter folder adapterDir into the safetensors
// file basePath and writes the result to outPath, copying every other tensor and the metadata
// unchanged. Everything is checked and computed before anything is written; the output is
// written atomically, so outPath may equal basePath without risk of a half-written file.
func MergeFile(basePath, adapterDir, outPath string, unmerge bool) (MergeReport, error) {
	a, err := Load(adapterDir)
	if err != nil {
		return MergeReport{}, err
	}
	f, err := safetensors.Read(basePath)
	if err != nil {
		return MergeReport{}, err
	}
	ts, rep, err := MergeTensors(a, f.Tensors, unmerge)
	if err != nil {
		return rep, fmt.Errorf("merge %s into %s: %w", adapterDir, basePath, err)
	}
	return rep, safetensors.Write(outPath, ts, f.Metadata)
}

// ExportLoRAFolder exports the adapter folder src as a plain PEFT LoRA adapter folder dst.
func ExportLoRAFolder(src, dst string) (*Adapter, error) {
	a, err := Load(src)
	if err != nil {
		return nil, err
	}
	if a.Config.Method() == peft.DoRA {
		return nil, fmt.Errorf("export %s: a DoRA adapter is not a plain LoRA adapter", src)
	}
	e, err := ExportLoRA(a)
	if err != nil {
		return nil, err
	}
	return e, Save(dst, e)
}
