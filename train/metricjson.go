package train

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// jsonFloat is a float64 that encodes NaN and ±Inf as the JSON strings "NaN", "+Inf" and "-Inf"
// (encoding/json refuses them, which would drop the very line that records a diverged step) and
// decodes those strings back. plot.LoadRun reads both forms.
type jsonFloat float64

// MarshalJSON implements json.Marshaler.
func (f jsonFloat) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON implements json.Unmarshaler.
func (f *jsonFloat) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil || !(math.IsNaN(v) || math.IsInf(v, 0)) {
			return fmt.Errorf("metric value %q: want a number, \"NaN\", \"+Inf\" or \"-Inf\"", s)
		}
		*f = jsonFloat(v)
		return nil
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = jsonFloat(v)
	return nil
}

// metricJSON is Metric's encoded form (same keys, non-finite values as strings).
type metricJSON struct {
	Step     int64                `json:"step"`
	Loss     jsonFloat            `json:"loss"`
	LR       jsonFloat            `json:"lr"`
	U        *jsonFloat           `json:"u,omitempty"`
	GradNorm jsonFloat            `json:"grad_norm"`
	Eval     map[string]jsonFloat `json:"eval,omitempty"`
	Wall     jsonFloat            `json:"wall_seconds"`
}

// MarshalJSON writes the metric line; a NaN or infinite value is written as a string so the line
// is never lost.
func (m Metric) MarshalJSON() ([]byte, error) {
	j := metricJSON{Step: m.Step, Loss: jsonFloat(m.Loss), LR: jsonFloat(m.LR), GradNorm: jsonFloat(m.GradNorm), Wall: jsonFloat(m.Wall)}
	if m.U != nil {
		u := jsonFloat(*m.U)
		j.U = &u
	}
	if m.Eval != nil {
		j.Eval = make(map[string]jsonFloat, len(m.Eval))
		for k, v := range m.Eval {
			j.Eval[k] = jsonFloat(v)
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads a metric line written by MarshalJSON.
func (m *Metric) UnmarshalJSON(b []byte) error {
	var j metricJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = Metric{Step: j.Step, Loss: float64(j.Loss), LR: float64(j.LR), GradNorm: float64(j.GradNorm), Wall: float64(j.Wall)}
	if j.U != nil {
		u := float64(*j.U)
		m.U = &u
	}
	if j.Eval != nil {
		m.Eval = make(map[string]float64, len(j.Eval))
		for k, v := range j.Eval {
			m.Eval[k] = float64(v)
		}
	}
	return nil
}
