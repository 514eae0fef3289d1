package plot

import (
	"errors"
	"fmt"
	"image/color"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Series is one line of a chart.
type Series struct {
	Name  string
	Color color.RGBA
	X, Y  []float64
	// Err, when not nil, holds ± error bar half-heights (e.g. the std over seeds), one per point.
	Err []float64
	// Markers draws a dot at each point (a series with one point always gets one).
	Markers bool
	// Faint draws the series lighter and thinner with no legend entry (the raw curve behind a
	// smoothed one).
	Faint bool
}

// Chart is a line chart. The zero Width and Height mean 800×500.
type Chart struct {
	Title, XLabel, YLabel string
	LogX                  bool
	// LogY draws the y axis on a log scale (points with y ≤ 0 are skipped; error bars reaching
	// below the axis are cut at it).
	LogY          bool
	Series        []Series
	Width, Height int
}

// Palette is the colour cycle of the runs (the Tableau 10 colours).
var Palette = []color.RGBA{
	{0x1f, 0x77, 0xb4, 0xff}, {0xff, 0x7f, 0x0e, 0xff}, {0x2c, 0xa0, 0x2c, 0xff}, {0xd6, 0x27, 0x28, 0xff},
	{0x94, 0x67, 0xbd, 0xff}, {0x8c, 0x56, 0x4b, 0xff}, {0xe3, 0x77, 0xc2, 0xff}, {0x7f, 0x7f, 0x7f, 0xff},
	{0xbc, 0xbd, 0x22, 0xff}, {0x17, 0xbe, 0xcf, 0xff},
}

// faint mixes c with white.
func faint(c color.RGBA) color.RGBA {
	mix := func(v uint8) uint8 { return uint8((int(v)*35 + 255*65) / 100) }
	return color.RGBA{mix(c.R), mix(c.G), mix(c.B), 0xff}
}

// CurveOptions configures Curves.
type CurveOptions struct {
	// Smooth, in [0, 1), is the weight of an exponential moving average (debiased, like
	// TensorBoard's) applied to the curves; the raw curve is drawn faintly behind. 0: none.
	Smooth float64
}

// MetricTitle names a metric for titles and axes: "loss" is the train loss.
func MetricTitle(metric string) string {
	switch metric {
	case "loss":
		return "train loss"
	case "lr":
		return "learning rate"
	case "u":
		return "SingLoRA ramp u"
	case "grad_norm":
		return "gradient norm"
	case "wall_seconds":
		return "wall time (s)"
	}
	if rest, ok := strings.CutPrefix(metric, "eval."); ok {
		return "eval " + rest
	}
	return metric
}

// Curves charts metric against step, one series per run that logs it. A metric no run logs is an
// error listing the available ones.
func Curves(runs []Run, metric string, opts CurveOptions) (*Chart, error) {
	if len(runs) == 0 {
		return nil, errors.New("plot: no runs")
	}
	if opts.Smooth < 0 || opts.Smooth >= 1 || math.IsNaN(opts.Smooth) {
		return nil, fmt.Errorf("plot: smoothing %g, want 0 ≤ s < 1", opts.Smooth)
	}
	c := &Chart{Title: MetricTitle(metric), XLabel: "step", YLabel: MetricTitle(metric)}
	if opts.Smooth > 0 {
		c.Title += fmt.Sprintf(" (EMA %g)", opts.Smooth)
	}
	for i, r := range runs {
		x, y := r.Series(metric)
		if len(x) == 0 {
			continue
		}
		col := Palette[i%len(Palette)]
		if opts.Smooth > 0 {
			c.Series = append(c.Series, Series{Name: r.Name, Color: faint(col), X: x, Y: y, Faint: true})
			y = ema(y, opts.Smooth)
		}
		c.Series = append(c.Series, Series{Name: r.Name, Color: col, X: x, Y: y})
	}
	if len(c.Series) == 0 {
		return nil, fmt.Errorf("plot: unknown metric %q; available: %s", metric, listOrNone(Available(runs)))
	}
	return c, nil
}

func listOrNone(s []string) string {
	if len(s) == 0 {
		return "(none: the runs have no metric lines)"
	}
	return strings.Join(s, ", ")
}

// ema is the debiased exponential moving average of y; non-finite values pass through and do not
// enter the average.
func ema(y []float64, beta float64) []float64 {
	out := make([]float64, len(y))
	acc, w := 0.0, 0.0
	for i, v := range y {
		if !finite(v) {
			out[i] = v
			continue
		}
		acc = beta*acc + (1-beta)*v
		w = beta*w + (1 - beta)
		out[i] = acc / w
	}
	return out
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// SweepPoint is one point of a learning-rate sweep: a method's final metric at a learning rate,
// with an optional ± error (0: none).
type SweepPoint struct {
	Method string
	LR     float64
	Value  float64
	Err    float64
}

// Sweep charts final metric against learning rate (log scale), one line per method (sorted by
// name), with error bars where Err > 0.
func Sweep(points []SweepPoint, metric string) (*Chart, error) {
	if len(points) == 0 {
		return nil, errors.New("plot: no sweep points")
	}
	byMethod := map[string][]SweepPoint{}
	for _, p := range points {
		if !(p.LR > 0) || math.IsInf(p.LR, 0) {
			return nil, fmt.Errorf("plot: method %s: learning rate %g, want > 0 for a log scale", p.Method, p.LR)
		}
		if !finite(p.Value) || !finite(p.Err) || p.Err < 0 {
			return nil, fmt.Errorf("plot: method %s lr %g: value %g ± %g is not finite", p.Method, p.LR, p.Value, p.Err)
		}
		byMethod[p.Method] = append(byMethod[p.Method], p)
	}
	methods := make([]string, 0, len(byMethod))
	for m := range byMethod {
		methods = append(methods, m)
	}
	sort.Strings(methods)
	c := &Chart{Title: "final " + MetricTitle(metric) + " vs learning rate", XLabel: "learning rate",
		YLabel: MetricTitle(metric), LogX: true}
	for i, m := range methods {
		ps := byMethod[m]
		sort.SliceStable(ps, func(a, b int) bool { return ps[a].LR < ps[b].LR })
		s := Series{Name: m, Color: Palette[i%len(Palette)], Markers: true}
		hasErr := false
		for _, p := range ps {
			s.X = append(s.X, p.LR)
			s.Y = append(s.Y, p.Value)
			s.Err = append(s.Err, p.Err)
			hasErr = hasErr || p.Err > 0
		}
		if !hasErr {
			s.Err = nil
		}
		c.Series = append(c.Series, s)
	}
	return c, nil
}

// SweepPoints turns runs into sweep points: method from config.json "method" (else "peft_type",
// else the run's name), learning rate from "lr" (else "learning_rate"), value = the metric's last
// finite value. Runs sharing method and learning rate (seeds) become one point: the mean, with the
// sample standard deviation as its error. A run without a learning rate is an error; runs without
// the metric are left out (an error when that leaves none).
func SweepPoints(runs []Run, metric string) ([]SweepPoint, error) {
	type key struct {
		method string
		lr     float64
	}
	groups := map[key][]float64{}
	var order []key
	for _, r := range runs {
		lr, ok := r.ConfigNumber("lr", "learning_rate")
		if !ok {
			return nil, fmt.Errorf("plot: run %s: config.json has no numeric \"lr\" or \"learning_rate\"", r.Dir)
		}
		v, ok := r.Final(metric)
		if !ok {
			continue
		}
		m, ok := r.ConfigString("method", "peft_type")
		if !ok {
			m = r.Name
		}
		k := key{m, lr}
		if _, seen := groups[k]; !seen {
			order = append(order, k)
		}
		groups[k] = append(groups[k], v)
	}
	if len(order) == 0 {
		return nil, fmt.Errorf("plot: no run has a value of %q; available: %s", metric, listOrNone(Available(runs)))
	}
	out := make([]SweepPoint, 0, len(order))
	for _, k := range order {
		vs := groups[k]
		mean := 0.0
		for _, v := range vs {
			mean += v
		}
		mean /= float64(len(vs))
		std := 0.0
		if len(vs) > 1 {
			for _, v := range vs {
				std += (v - mean) * (v - mean)
			}
			std = math.Sqrt(std / float64(len(vs)-1))
		}
		out = append(out, SweepPoint{Method: k.method, LR: k.lr, Value: mean, Err: std})
	}
	return out, nil
}

// tick is an axis tick: its value and label.
type tick struct {
	v     float64
	label string
}

// niceNum rounds x to the nearest of 1, 2, 5 or 10 × a power of ten.
func niceNum(x float64) float64 {
	e := math.Floor(math.Log10(x))
	p := math.Pow(10, e)
	switch f := x / p; {
	case f < 1.5:
		return p
	case f < 3:
		return 2 * p
	case f < 7:
		return 5 * p
	}
	return 10 * p
}

// linearTicks returns about want ticks at round numbers covering [lo, hi], and the extended range.
func linearTicks(lo, hi float64, want int) ([]tick, float64, float64) {
	if hi-lo < 1e-12*math.Max(math.Abs(lo), math.Abs(hi)) || hi == lo {
		d := math.Abs(lo) * 0.1
		if d == 0 {
			d = 1
		}
		lo, hi = lo-d, hi+d
	}
	step := niceNum((hi - lo) / float64(want-1))
	lo2 := math.Floor(lo/step+1e-9) * step
	hi2 := math.Ceil(hi/step-1e-9) * step
	var ts []tick
	maxAbs := math.Max(math.Abs(lo2), math.Abs(hi2))
	for i := 0; ; i++ {
		v := lo2 + float64(i)*step
		if v > hi2+step*1e-6 {
			break
		}
		if math.Abs(v) < step*1e-9 {
			v = 0
		}
		ts = append(ts, tick{v, formatLinear(v, step, maxAbs)})
	}
	return ts, math.Min(lo2, lo), math.Max(hi2, hi) // min/max: rounding error in lo2, hi2
}

func formatLinear(v, step, maxAbs float64) string {
	if v == 0 {
		return "0"
	}
	if step < 1e-3 || maxAbs >= 1e6 {
		// A shared exponent: 0.5e-4, 1.0e-4, 1.5e-4.
		e := math.Floor(math.Log10(maxAbs) + 1e-9)
		dec := max(0, int(e-math.Floor(math.Log10(step)+1e-9)))
		return strconv.FormatFloat(v/math.Pow(10, e), 'f', dec, 64) + "e" + strconv.Itoa(int(e))
	}
	dec := max(0, int(-math.Floor(math.Log10(step)+1e-9)))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// shortExp turns "2.0e-05" into "2e-5".
func shortExp(s string) string {
	mant, exp, ok := strings.Cut(s, "e")
	if !ok {
		return s
	}
	if strings.Contains(mant, ".") {
		mant = strings.TrimRight(strings.TrimRight(mant, "0"), ".")
	}
	sign := ""
	if exp[0] == '-' || exp[0] == '+' {
		if exp[0] == '-' {
			sign = "-"
		}
		exp = exp[1:]
	}
	exp = strings.TrimLeft(exp, "0")
	if exp == "" {
		return mant
	}
	return mant + "e" + sign + exp
}

// logTicks returns ticks at powers of ten (with 2 and 5 between them for narrow ranges) covering
// [lo, hi] (both > 0), and the extended range.
func logTicks(lo, hi float64) ([]tick, float64, float64) {
	e0 := math.Floor(math.Log10(lo) + 1e-9)
	e1 := math.Ceil(math.Log10(hi) - 1e-9)
	if e1 <= e0 {
		e1 = e0 + 1
	}
	var ts []tick
	span := int(e1 - e0)
	stride := max(1, (span+7)/8)
	for e := int(e0); e <= int(e1); e++ {
		p := math.Pow(10, float64(e))
		if (e-int(e0))%stride == 0 {
			ts = append(ts, tick{p, formatLog(p)})
		}
		if span <= 2 && e < int(e1) {
			for _, m := range []float64{2, 5} {
				ts = append(ts, tick{m * p, formatLog(m * p)})
			}
		}
	}
	sort.Slice(ts, func(a, b int) bool { return ts[a].v < ts[b].v })
	return ts, math.Pow(10, e0), math.Pow(10, e1)
}

func formatLog(v float64) string {
	if v >= 1 && v < 1e4 {
		return strconv.FormatFloat(v, 'f', -1, 64) // 1000, not 1e+03
	}
	if v >= 1e-2 && v < 1e4 {
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return shortExp(strconv.FormatFloat(v, 'e', 0, 64))
}

// Fixed sizes of the layout, in pixels. Text is measured as charW per character, the advance of
// the PNG font (basicfont 7×13) and about that of 12px sans-serif in SVG.
const (
	charW      = 7.0
	fontSize   = 12.0
	titleSize  = 14.0
	legendRow  = 18.0
	swatchW    = 20.0
	maxLegendN = 32 // legend names are cut to this many characters
)

// layout is where a chart's parts go: shared by the SVG and PNG writers so they draw the same.
type layout struct {
	w, h                     float64
	left, top, right, bottom float64 // plot area
	xt, yt                   []tick
	x0, x1, y0, y1           float64 // axis ranges
	logX, logY               bool
	legendX                  float64
	names                    []string // legend names (cut)
}

func (c *Chart) layout() layout {
	l := layout{w: float64(c.Width), h: float64(c.Height), logX: c.LogX, logY: c.LogY}
	if c.Width <= 0 || c.Height <= 0 {
		l.w, l.h = 800, 500
	}
	xlo, xhi, ylo, yhi := math.Inf(1), math.Inf(-1), math.Inf(1), math.Inf(-1)
	for _, s := range c.Series {
		for i := range s.X {
			x, y := s.X[i], s.Y[i]
			if !finite(x) || !finite(y) || (c.LogX && x <= 0) || (c.LogY && y <= 0) {
				continue
			}
			e := 0.0
			if s.Err != nil && i < len(s.Err) && finite(s.Err[i]) {
				e = math.Abs(s.Err[i])
			}
			xlo, xhi = math.Min(xlo, x), math.Max(xhi, x)
			lo := y - e
			if c.LogY && lo <= 0 {
				lo = y
			}
			ylo, yhi = math.Min(ylo, lo), math.Max(yhi, y+e)
		}
	}
	if xlo > xhi { // no finite points
		xlo, xhi, ylo, yhi = 0, 1, 0, 1
		if c.LogX {
			xlo, xhi = 1e-4, 1e-2
		}
		if c.LogY {
			ylo, yhi = 1, 10
		}
	}
	if c.LogX {
		l.xt, l.x0, l.x1 = logTicks(xlo, xhi)
	} else {
		l.xt, l.x0, l.x1 = linearTicks(xlo, xhi, 7)
	}
	if c.LogY {
		l.yt, l.y0, l.y1 = logTicks(ylo, yhi)
	} else {
		l.yt, l.y0, l.y1 = linearTicks(ylo, yhi, 6)
	}

	maxY := 0
	for _, t := range l.yt {
		maxY = max(maxY, len(t.label))
	}
	maxName := 0
	for _, s := range c.Series {
		if s.Faint {
			continue
		}
		name := cut(s.Name, maxLegendN)
		l.names = append(l.names, name)
		maxName = max(maxName, len([]rune(name)))
	}
	l.left = 24 + float64(maxY)*charW + 10
	l.top = 36
	l.bottom = l.h - 48
	l.right = l.w - 16
	if len(l.names) > 0 {
		l.right -= swatchW + 8 + float64(maxName)*charW + 12
	}
	l.right = math.Max(l.right, l.left+50)
	l.legendX = l.right + 12
	return l
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// px maps a data x to a pixel column.
func (l layout) px(x float64) float64 {
	var f float64
	if l.logX {
		f = (math.Log10(x) - math.Log10(l.x0)) / (math.Log10(l.x1) - math.Log10(l.x0))
	} else {
		f = (x - l.x0) / (l.x1 - l.x0)
	}
	return l.left + f*(l.right-l.left)
}

// py maps a data y to a pixel row; on a log axis a y below the axis (an error bar's end ≤ 0)
// maps to the axis.
func (l layout) py(y float64) float64 {
	if l.logY {
		y = math.Max(y, l.y0)
		return l.bottom - (math.Log10(y)-math.Log10(l.y0))/(math.Log10(l.y1)-math.Log10(l.y0))*(l.bottom-l.top)
	}
	return l.bottom - (y-l.y0)/(l.y1-l.y0)*(l.bottom-l.top)
}

// segments returns the pixel polylines of a series, broken at non-finite points.
func (l layout) segments(s Series) [][][2]float64 {
	var segs [][][2]float64
	var cur [][2]float64
	for i := range s.X {
		x, y := s.X[i], s.Y[i]
		if !finite(x) || !finite(y) || (l.logX && x <= 0) || (l.logY && y <= 0) {
			if len(cur) > 0 {
				segs = append(segs, cur)
				cur = nil
			}
			continue
		}
		cur = append(cur, [2]float64{l.px(x), l.py(y)})
	}
	if len(cur) > 0 {
		segs = append(segs, cur)
	}
	return segs
}

// legendY is the baseline row of legend entry i.
func (l layout) legendY(i int) float64 { return l.top + 12 + float64(i)*legendRow }
