// Package plot draws training curves and learning-rate sweeps from run folders as SVG and PNG.
//
// A run folder holds metrics.jsonl, one JSON object per logged step:
//
//	{"step":12,"loss":0.53,"lr":0.001,"u":0.12,"grad_norm":1.3,"eval":{"accuracy":0.91},"wall_seconds":4.2}
//
// and optionally config.json, whose "name" (else "method") labels the run. Every numeric field is
// a metric; nested objects are flattened with dots ("eval.accuracy").
package plot

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Files of a run folder.
const (
	MetricsFile = "metrics.jsonl"
	ConfigFile  = "config.json"
)

// Point is one line of metrics.jsonl: the step and its metrics by flattened name.
type Point struct {
	Step   float64
	Values map[string]float64
}

// Run is one training run.
type Run struct {
	Name   string         // legend label
	Dir    string         // run folder
	Config map[string]any // config.json, nil if absent
	Points []Point        // in step order
}

// LoadRun reads a run folder. Steps that go back (a resumed run re-logging steps after its last
// checkpoint) replace the earlier points from that step on. A last line without a newline that
// does not parse is taken as still being written and skipped.
func LoadRun(dir string) (Run, error) {
	r := Run{Dir: dir, Name: filepath.Base(filepath.Clean(dir))}
	if b, err := os.ReadFile(filepath.Join(dir, ConfigFile)); err == nil {
		if err := json.Unmarshal(b, &r.Config); err != nil {
			return r, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
		}
		for _, k := range []string{"name", "method", "peft_type"} {
			if s, ok := r.Config[k].(string); ok && strings.TrimSpace(s) != "" {
				r.Name = s
				break
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return r, err
	}
	path := filepath.Join(dir, MetricsFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return r, fmt.Errorf("run %s: no %s: %w", dir, MetricsFile, err)
		}
		return r, err
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	for line := 1; ; line++ {
		b, rerr := br.ReadBytes('\n')
		if len(b) == 0 && rerr == io.EOF {
			break
		}
		if len(bytes.TrimSpace(b)) > 0 {
			p, err := parsePoint(b)
			if err != nil {
				if rerr == io.EOF { // partial last line of a run in progress
					break
				}
				return r, fmt.Errorf("%s:%d: %v", path, line, err)
			}
			// Drop points a resumed run logs again.
			n := len(r.Points)
			for n > 0 && r.Points[n-1].Step >= p.Step {
				n--
			}
			r.Points = append(r.Points[:n], p)
		}
		if rerr == io.EOF {
			break
		}
	}
	return r, nil
}

// LoadRuns loads run folders and makes their names unique (adding the folder name, then #2, #3…).
func LoadRuns(dirs ...string) ([]Run, error) {
	if len(dirs) == 0 {
		return nil, errors.New("no run folders")
	}
	runs := make([]Run, 0, len(dirs))
	for _, d := range dirs {
		r, err := LoadRun(d)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
	}
	count := map[string]int{}
	for _, r := range runs {
		count[r.Name]++
	}
	used := map[string]bool{}
	for i := range runs {
		r := &runs[i]
		base := filepath.Base(filepath.Clean(r.Dir))
		if count[r.Name] > 1 && r.Name != base {
			r.Name += " (" + base + ")"
		}
		name := r.Name
		for k := 2; used[name]; k++ {
			name = fmt.Sprintf("%s #%d", r.Name, k)
		}
		r.Name = name
		used[name] = true
	}
	return runs, nil
}

func parsePoint(b []byte) (Point, error) {
	var m map[string]json.RawMessage
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return Point{}, fmt.Errorf("not a JSON object: %v", err)
	}
	if d.More() {
		return Point{}, errors.New("extra data after the JSON object")
	}
	if m == nil {
		return Point{}, errors.New("not a JSON object: null")
	}
	p := Point{Values: map[string]float64{}}
	s, ok := m["step"]
	if !ok {
		return p, errors.New(`no "step"`)
	}
	step, ok := number(s)
	if !ok || math.IsNaN(step) || math.IsInf(step, 0) {
		return p, fmt.Errorf(`"step" is %s, want a number`, s)
	}
	p.Step = step
	if err := flatten("", m, p.Values); err != nil {
		return p, err
	}
	delete(p.Values, "step")
	return p, nil
}

// number parses a JSON number, or the strings "NaN", "Inf", "+Inf", "-Inf", "Infinity".
func number(v json.RawMessage) (float64, bool) {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return 0, false
	}
	if v[0] == '"' {
		var s string
		if json.Unmarshal(v, &s) != nil {
			return 0, false
		}
		switch strings.ToLower(s) {
		case "nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity":
			f, err := strconv.ParseFloat(s, 64)
			return f, err == nil
		}
		return 0, false
	}
	if v[0] == '-' || (v[0] >= '0' && v[0] <= '9') {
		f, err := strconv.ParseFloat(string(v), 64)
		return f, err == nil
	}
	return 0, false
}

// flatten adds the numeric fields of m (recursively, joined with dots) to out.
func flatten(prefix string, m map[string]json.RawMessage, out map[string]float64) error {
	for k, v := range m {
		name := prefix + k
		if f, ok := number(v); ok {
			out[name] = f
			continue
		}
		if t := bytes.TrimSpace(v); len(t) > 0 && t[0] == '{' {
			var sub map[string]json.RawMessage
			if err := json.Unmarshal(t, &sub); err != nil {
				return fmt.Errorf("%q: %v", name, err)
			}
			if err := flatten(name+".", sub, out); err != nil {
				return err
			}
		}
		// Strings, booleans, arrays and null are not metrics.
	}
	return nil
}

// Metrics lists the metrics the run logs, sorted.
func (r Run) Metrics() []string {
	seen := map[string]bool{}
	for _, p := range r.Points {
		for k := range p.Values {
			seen[k] = true
		}
	}
	return sortedKeys(seen)
}

// Available lists the metrics any of runs logs, sorted.
func Available(runs []Run) []string {
	seen := map[string]bool{}
	for _, r := range runs {
		for _, m := range r.Metrics() {
			seen[m] = true
		}
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Series returns the steps and values of a metric (points without it are left out; non-finite
// values are kept and break the line).
func (r Run) Series(metric string) (steps, values []float64) {
	for _, p := range r.Points {
		if v, ok := p.Values[metric]; ok {
			steps = append(steps, p.Step)
			values = append(values, v)
		}
	}
	return
}

// Final returns the metric's last finite value.
func (r Run) Final(metric string) (float64, bool) {
	for i := len(r.Points) - 1; i >= 0; i-- {
		if v, ok := r.Points[i].Values[metric]; ok && !math.IsNaN(v) && !math.IsInf(v, 0) {
			return v, true
		}
	}
	return 0, false
}

// ConfigNumber returns the first of the config keys that holds a number.
func (r Run) ConfigNumber(keys ...string) (float64, bool) {
	for _, k := range keys {
		if f, ok := r.Config[k].(float64); ok {
			return f, true
		}
	}
	return 0, false
}

// ConfigString returns the first of the config keys that holds a non-empty string.
func (r Run) ConfigString(keys ...string) (string, bool) {
	for _, k := range keys {
		if s, ok := r.Config[k].(string); ok && s != "" {
			return s, true
		}
	}
	return "", false
}
