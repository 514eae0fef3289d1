package plot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"image/color"
	"image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// mkRun writes a run folder with metrics lines and an optional config.json.
func mkRun(t *testing.T, parent, name, config string, lines ...string) string {
	t.Helper()
	dir := filepath.Join(parent, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if config != "" {
		if err := os.WriteFile(filepath.Join(dir, ConfigFile), []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, MetricsFile), []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// curve makes metrics lines with a decaying loss and an eval every 5 steps.
func curve(n int, scale float64) []string {
	var out []string
	for s := 1; s <= n; s++ {
		line := fmt.Sprintf(`{"step":%d,"loss":%g,"lr":0.001,"u":%g,"grad_norm":%g,"wall_seconds":%g`,
			s, scale*math.Exp(-float64(s)/10)+0.05*math.Sin(float64(s)), math.Min(1, float64(s)/10), 1+0.1*float64(s%3), 0.1*float64(s))
		if s%5 == 0 {
			line += fmt.Sprintf(`,"eval":{"accuracy":%g,"loss":%g}`, 1-scale*0.5/float64(s), scale/float64(s))
		}
		out = append(out, line+"}")
	}
	return out
}

func TestLoadRun(t *testing.T) {
	tmp := t.TempDir()
	a := mkRun(t, tmp, "run-a", `{"name":"SingLoRA r=8","lr":0.001}`, curve(20, 1)...)
	r, err := LoadRun(a)
	if err != nil {
		t.Fatal(err)
	}
	if r.Name != "SingLoRA r=8" || len(r.Points) != 20 || r.Points[4].Step != 5 {
		t.Errorf("run %q with %d points", r.Name, len(r.Points))
	}
	want := []string{"eval.accuracy", "eval.loss", "grad_norm", "loss", "lr", "u", "wall_seconds"}
	if got := r.Metrics(); !reflect.DeepEqual(got, want) {
		t.Errorf("metrics %v, want %v", got, want)
	}
	x, y := r.Series("eval.accuracy")
	if len(x) != 4 || x[0] != 5 || y[3] != 1-0.5/20 {
		t.Errorf("eval.accuracy series %v %v", x, y)
	}
	if v, ok := r.Final("eval.loss"); !ok || v != 1.0/20 {
		t.Errorf("Final = %v %v", v, ok)
	}

	// Name: method when there is no name; folder name without config.
	b := mkRun(t, tmp, "run-b", `{"method":"lora"}`, `{"step":1,"loss":1}`)
	c := mkRun(t, tmp, "run-c", "", `{"step":1,"loss":1}`)
	for dir, name := range map[string]string{b: "lora", c: "run-c"} {
		r, err := LoadRun(dir)
		if err != nil || r.Name != name {
			t.Errorf("LoadRun(%s): name %q, %v; want %q", dir, r.Name, err, name)
		}
	}

	// A resumed run re-logs steps 3..: the later lines win. Null and strings are not metrics;
	// "NaN" is a gap. A partial last line is skipped.
	d := filepath.Join(tmp, "resumed")
	os.MkdirAll(d, 0o755)
	os.WriteFile(filepath.Join(d, MetricsFile), []byte(
		`{"step":1,"loss":1}`+"\n"+`{"step":2,"loss":0.9}`+"\n"+`{"step":3,"loss":0.8}`+"\n"+`{"step":4,"loss":0.7}`+"\n\n"+
			`{"step":3,"loss":0.75,"u":null,"note":"resumed"}`+"\n"+`{"step":4,"loss":"NaN"}`+"\n"+`{"step":5,"lo`), 0o644)
	r, err = LoadRun(d)
	if err != nil {
		t.Fatal(err)
	}
	x, y = r.Series("loss")
	if !reflect.DeepEqual(x, []float64{1, 2, 3, 4}) || y[2] != 0.75 || !math.IsNaN(y[3]) {
		t.Errorf("resumed series %v %v", x, y)
	}
	if got := r.Metrics(); !reflect.DeepEqual(got, []string{"loss"}) {
		t.Errorf("metrics %v", got)
	}
}

func TestLoadRunErrors(t *testing.T) {
	tmp := t.TempDir()
	empty := filepath.Join(tmp, "empty")
	os.MkdirAll(empty, 0o755)
	tests := []struct {
		name string
		dir  string
		want []string
	}{
		{"no metrics.jsonl", empty, []string{empty, "no metrics.jsonl"}},
		{"not json", mkRun(t, tmp, "bad1", "", `{"step":1,"loss":1}`, `{"step":2,"loss":}`, `{"step":3}`),
			[]string{filepath.Join(tmp, "bad1", MetricsFile) + ":2:", "not a JSON object"}},
		{"array", mkRun(t, tmp, "bad2", "", `[1,2]`), []string{MetricsFile + ":1:", "not a JSON object"}},
		{"null line", mkRun(t, tmp, "bad3", "", `{"step":1}`, `null`), []string{MetricsFile + ":2:", "null"}},
		{"no step", mkRun(t, tmp, "bad4", "", `{"step":1}`, `{"step":2}`, `{"loss":1}`), []string{MetricsFile + ":3:", `no "step"`}},
		{"step a string", mkRun(t, tmp, "bad5", "", `{"step":"one"}`), []string{MetricsFile + ":1:", `"step" is "one"`}},
		{"two objects", mkRun(t, tmp, "bad6", "", `{"step":1} {"step":2}`), []string{MetricsFile + ":1:", "extra data"}},
		{"bad config", mkRun(t, tmp, "bad7", `{"name":`, `{"step":1}`), []string{ConfigFile}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadRun(tc.dir)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := LoadRun(empty); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing metrics: %v is not ErrNotExist", err)
	}
	if _, err := LoadRuns(); err == nil {
		t.Error("LoadRuns(): no error")
	}
}

func TestLoadRunsUniqueNames(t *testing.T) {
	tmp := t.TempDir()
	a := mkRun(t, tmp, "a", `{"method":"singlora"}`, `{"step":1,"loss":1}`)
	b := mkRun(t, tmp, "b", `{"method":"singlora"}`, `{"step":1,"loss":1}`)
	c := mkRun(t, tmp, "c", `{"method":"lora"}`, `{"step":1,"loss":1}`)
	runs, err := LoadRuns(a, b, c, a)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range runs {
		names = append(names, r.Name)
	}
	want := []string{"singlora (a)", "singlora (b)", "lora", "singlora (a) #2"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("names %q, want %q", names, want)
	}
}

// svgDoc is the part of the SVG the tests look at.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Width   string   `xml:"width,attr"`
	Texts   []string `xml:"text"`
	Groups  []svgG   `xml:"g"`
}

type svgG struct {
	Class   string      `xml:"class,attr"`
	Name    string      `xml:"data-name,attr"`
	Title   string      `xml:"title"`
	Paths   []svgPath   `xml:"path"`
	Circles []struct{}  `xml:"circle"`
	Texts   []string    `xml:"text"`
	Lines   []svgLine   `xml:"line"`
	Inner   []svgInnerG `xml:"g"`
}

type svgPath struct {
	Class  string `xml:"class,attr"`
	D      string `xml:"d,attr"`
	Stroke string `xml:"stroke,attr"`
}

type svgLine struct {
	Stroke string `xml:"stroke,attr"`
}

type svgInnerG struct{}

func parseSVG(t *testing.T, c *Chart) (svgDoc, string) {
	t.Helper()
	var b bytes.Buffer
	if err := c.SVG(&b); err != nil {
		t.Fatal(err)
	}
	// Well-formed XML, token by token.
	dec := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	for {
		_, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not valid XML: %v\n%s", err, b.String())
		}
	}
	var doc svgDoc
	if err := xml.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc, b.String()
}

func seriesGroups(doc svgDoc) []svgG {
	var out []svgG
	for _, g := range doc.Groups {
		if g.Class == "series" {
			out = append(out, g)
		}
	}
	return out
}

func threeRuns(t *testing.T) []Run {
	tmp := t.TempDir()
	a := mkRun(t, tmp, "a", `{"name":"SingLoRA <r=8> & \"theory\""}`, curve(30, 1)...)
	b := mkRun(t, tmp, "b", `{"method":"LoRA"}`, curve(40, 1.5)...)
	c := mkRun(t, tmp, "c", "", curve(25, 0.7)...)
	runs, err := LoadRuns(a, b, c)
	if err != nil {
		t.Fatal(err)
	}
	return runs
}

func TestCurvesSVG(t *testing.T) {
	runs := threeRuns(t)
	for _, metric := range []string{"loss", "lr", "u", "grad_norm", "eval.accuracy", "eval.loss", "wall_seconds"} {
		t.Run(metric, func(t *testing.T) {
			c, err := Curves(runs, metric, CurveOptions{})
			if err != nil {
				t.Fatal(err)
			}
			doc, raw := parseSVG(t, c)
			gs := seriesGroups(doc)
			if len(gs) != 3 {
				t.Fatalf("%d series groups, want 3", len(gs))
			}
			for i, g := range gs {
				if g.Name != runs[i].Name || g.Title != runs[i].Name {
					t.Errorf("series %d named %q/%q, want %q", i, g.Name, g.Title, runs[i].Name)
				}
				if len(g.Paths) != 1 || !strings.HasPrefix(g.Paths[0].D, "M") || g.Paths[0].Stroke != hex(Palette[i]) {
					t.Errorf("series %d paths %+v", i, g.Paths)
				}
			}
			for _, r := range runs {
				if !strings.Contains(raw, esc(r.Name)) {
					t.Errorf("SVG lacks the name %q", r.Name)
				}
			}
			if !strings.Contains(raw, MetricTitle(metric)) || !strings.Contains(raw, ">step<") {
				t.Error("SVG lacks the title or axis label")
			}
			var legend *svgG
			for i := range doc.Groups {
				if doc.Groups[i].Class == "legend" {
					legend = &doc.Groups[i]
				}
			}
			if legend == nil || len(legend.Texts) != 3 || legend.Texts[0] != runs[0].Name {
				t.Errorf("legend %+v", legend)
			}
		})
	}
}

func TestCurvesSmooth(t *testing.T) {
	runs := threeRuns(t)
	c, err := Curves(runs, "loss", CurveOptions{Smooth: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Series) != 6 || !c.Series[0].Faint || c.Series[1].Faint || !strings.Contains(c.Title, "EMA 0.9") {
		t.Fatalf("smoothed chart %d series, title %q", len(c.Series), c.Title)
	}
	raw, sm := c.Series[0].Y, c.Series[1].Y
	if sm[0] != raw[0] { // debiased: the first value is the first point
		t.Errorf("EMA starts at %g, want %g", sm[0], raw[0])
	}
	want := (0.9*0.1*raw[0] + 0.1*raw[1]) / (1 - 0.81)
	if math.Abs(sm[1]-want) > 1e-12 {
		t.Errorf("EMA[1] = %g, want %g", sm[1], want)
	}
	doc, _ := parseSVG(t, c)
	if len(seriesGroups(doc)) != 3 {
		t.Error("want 3 solid series")
	}
	legend := doc.Groups[len(doc.Groups)-1]
	if legend.Class != "legend" || len(legend.Texts) != 3 {
		t.Errorf("legend has %d entries, want 3 (no raw curves)", len(legend.Texts))
	}
	if _, err := Curves(runs, "loss", CurveOptions{Smooth: 1}); err == nil {
		t.Error("smooth 1: no error")
	}
}

func TestCurvesErrors(t *testing.T) {
	runs := threeRuns(t)
	_, err := Curves(runs, "eval.f1", CurveOptions{})
	if err == nil || !strings.Contains(err.Error(), `unknown metric "eval.f1"`) ||
		!strings.Contains(err.Error(), "available: eval.accuracy, eval.loss, grad_norm, loss, lr, u, wall_seconds") {
		t.Errorf("unknown metric error: %v", err)
	}
	if _, err := Curves(nil, "loss", CurveOptions{}); err == nil {
		t.Error("no runs: no error")
	}
	// A run that lacks the metric is left out.
	tmp := t.TempDir()
	only := mkRun(t, tmp, "x", "", `{"step":1,"loss":2}`, `{"step":2,"loss":1}`)
	r, _ := LoadRun(only)
	c, err := Curves(append(runs, r), "eval.accuracy", CurveOptions{})
	if err != nil || len(c.Series) != 3 {
		t.Errorf("eval.accuracy with a run lacking it: %v", err)
	}
}

// colours counts the pixels of each colour.
func colours(t *testing.T, path string) (map[color.RGBA]int, int, int) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[color.RGBA]int{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[color.RGBA{uint8(r >> 8), uint8(g >> 8), uint8(bl >> 8), uint8(a >> 8)}]++
		}
	}
	return counts, b.Dx(), b.Dy()
}

func TestWritePNGAndSVG(t *testing.T) {
	runs := threeRuns(t)
	c, err := Curves(runs, "loss", CurveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	pngPath, svgPath := filepath.Join(out, "loss.png"), filepath.Join(out, "loss.svg")
	if err := c.WritePNG(pngPath); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteSVG(svgPath); err != nil {
		t.Fatal(err)
	}
	counts, w, h := colours(t, pngPath)
	if w != 800 || h != 500 {
		t.Errorf("PNG is %d×%d", w, h)
	}
	if counts[white] < w*h/2 {
		t.Errorf("background: %d white pixels", counts[white])
	}
	for i := range runs {
		if n := counts[Palette[i]]; n < 100 {
			t.Errorf("run %d colour %v: %d pixels", i, Palette[i], n)
		}
	}
	if counts[black] < 500 { // axes, ticks and text
		t.Errorf("%d black pixels", counts[black])
	}
	if n := counts[Palette[3]]; n != 0 {
		t.Errorf("unused colour has %d pixels", n)
	}
	// Only the two charts are left in the folder: no temporary files.
	ents, _ := os.ReadDir(out)
	if len(ents) != 2 {
		t.Errorf("folder holds %d entries", len(ents))
	}
	b, _ := os.ReadFile(svgPath)
	if !bytes.HasPrefix(b, []byte("<?xml")) {
		t.Error("SVG file does not start with <?xml")
	}
	// Writing into a missing folder fails and leaves nothing behind.
	if err := c.WritePNG(filepath.Join(out, "nope", "x.png")); err == nil {
		t.Error("write into a missing folder: no error")
	}
}

func TestPNGTextDrawn(t *testing.T) {
	// A chart with no series still draws the title and axis labels in black.
	c := &Chart{Title: "TITLE", XLabel: "step", YLabel: "loss", Width: 300, Height: 200}
	img := c.Image()
	left := 0
	for y := 0; y < 30; y++ { // title row
		for x := 0; x < 300; x++ {
			if img.RGBAAt(x, y) == black {
				left++
			}
		}
	}
	if left == 0 {
		t.Error("no title pixels")
	}
	vert := 0
	for y := 0; y < 200; y++ { // y label column
		for x := 8; x < 24; x++ {
			if img.RGBAAt(x, y) == black {
				vert++
			}
		}
	}
	if vert == 0 {
		t.Error("no y-label pixels")
	}
}

func TestGapsAndSinglePoints(t *testing.T) {
	c := &Chart{Series: []Series{
		{Name: "gappy", Color: Palette[0], X: []float64{1, 2, 3, 4, 5, 6}, Y: []float64{1, 2, math.NaN(), 3, 4, math.Inf(1)}},
		{Name: "single", Color: Palette[1], X: []float64{3}, Y: []float64{2.5}},
	}}
	doc, _ := parseSVG(t, c)
	gs := seriesGroups(doc)
	if len(gs[0].Paths) != 2 {
		t.Errorf("gappy: %d paths, want 2", len(gs[0].Paths))
	}
	if len(gs[1].Circles) != 1 {
		t.Errorf("single point: %d circles", len(gs[1].Circles))
	}
	img := c.Image()
	n := 0
	for _, p := range img.Pix {
		_ = p
	}
	b := img.Bounds()
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			if img.RGBAAt(x, y) == Palette[1] {
				n++
			}
		}
	}
	if n < 10 { // marker + legend swatch
		t.Errorf("single point: %d pixels", n)
	}
	// All non-finite: still a valid chart.
	c = &Chart{Series: []Series{{Name: "nan", X: []float64{1}, Y: []float64{math.NaN()}}}}
	parseSVG(t, c)
	c.Image()
}

func TestSweep(t *testing.T) {
	pts := []SweepPoint{
		{"singlora", 1e-3, 0.90, 0.01}, {"singlora", 1e-4, 0.85, 0.02}, {"singlora", 1e-2, 0.70, 0.05},
		{"lora", 1e-4, 0.80, 0}, {"lora", 1e-3, 0.88, 0}, {"lora", 1e-2, 0.60, 0},
		{"dora", 3e-4, 0.87, 0.015},
	}
	c, err := Sweep(pts, "eval.accuracy")
	if err != nil {
		t.Fatal(err)
	}
	if !c.LogX || len(c.Series) != 3 || c.Series[0].Name != "dora" || c.Series[1].Name != "lora" {
		t.Fatalf("sweep chart %+v", c)
	}
	if !reflect.DeepEqual(c.Series[2].X, []float64{1e-4, 1e-3, 1e-2}) || c.Series[1].Err != nil {
		t.Errorf("singlora x %v, lora err %v", c.Series[2].X, c.Series[1].Err)
	}
	doc, raw := parseSVG(t, c)
	gs := seriesGroups(doc)
	bars := 0
	for _, g := range gs {
		for _, p := range g.Paths {
			if p.Class == "error-bar" {
				bars++
			}
		}
		if len(g.Circles) == 0 {
			t.Errorf("%s: no markers", g.Name)
		}
	}
	if bars != 4 {
		t.Errorf("%d error bars, want 4", bars)
	}
	for _, lbl := range []string{">1e-4<", ">1e-3<", ">0.01<", ">learning rate<"} {
		if !strings.Contains(raw, lbl) {
			t.Errorf("SVG lacks %q", lbl)
		}
	}
	counts := map[color.RGBA]int{}
	img := c.Image()
	for i := 0; i < len(img.Pix); i += 4 {
		counts[color.RGBA{img.Pix[i], img.Pix[i+1], img.Pix[i+2], img.Pix[i+3]}]++
	}
	for i := range 3 {
		if counts[Palette[i]] < 30 {
			t.Errorf("method %d: %d pixels", i, counts[Palette[i]])
		}
	}

	for _, bad := range [][]SweepPoint{nil, {{"x", 0, 1, 0}}, {{"x", -1e-3, 1, 0}}, {{"x", 1e-3, math.NaN(), 0}}, {{"x", 1e-3, 1, -1}}} {
		if _, err := Sweep(bad, "loss"); err == nil {
			t.Errorf("Sweep(%v): no error", bad)
		}
	}
}

func TestSweepPoints(t *testing.T) {
	tmp := t.TempDir()
	var dirs []string
	for i, cfg := range []string{
		`{"method":"singlora","lr":0.001,"seed":1}`, `{"method":"singlora","lr":0.001,"seed":2}`,
		`{"method":"lora","learning_rate":0.0001}`,
	} {
		acc := []float64{0.8, 0.9, 0.7}[i]
		dirs = append(dirs, mkRun(t, tmp, fmt.Sprint(i), cfg, `{"step":1,"eval":{"accuracy":0.1}}`,
			fmt.Sprintf(`{"step":2,"loss":1,"eval":{"accuracy":%g}}`, acc), `{"step":3,"loss":0.5}`))
	}
	runs, err := LoadRuns(dirs...)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := SweepPoints(runs, "eval.accuracy")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[0].Method != "singlora" || math.Abs(pts[0].Value-0.85) > 1e-12 ||
		math.Abs(pts[0].Err-math.Sqrt(0.005)) > 1e-12 || pts[1] != (SweepPoint{"lora", 1e-4, 0.7, 0}) {
		t.Errorf("points %+v", pts)
	}
	if _, err := SweepPoints(runs, "eval.f1"); err == nil || !strings.Contains(err.Error(), "available: eval.accuracy, loss") {
		t.Errorf("missing metric: %v", err)
	}
	other := mkRun(t, tmp, "other", `{"method":"dora","lr":0.01}`, `{"step":1,"eval":{"f1":0.5}}`)
	r0, _ := LoadRun(other)
	if pts, err := SweepPoints(append(runs, r0), "eval.accuracy"); err != nil || len(pts) != 2 {
		t.Errorf("a run lacking the metric is not left out: %v %v", pts, err)
	}
	nolr := mkRun(t, tmp, "nolr", `{"method":"x"}`, `{"step":1,"loss":1}`)
	r, _ := LoadRun(nolr)
	if _, err := SweepPoints([]Run{r}, "loss"); err == nil || !strings.Contains(err.Error(), "lr") {
		t.Errorf("no lr: %v", err)
	}
}

func TestTicks(t *testing.T) {
	tests := []struct {
		lo, hi float64
		want   []string
	}{
		{0.31, 0.95, []string{"0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"}},
		{1, 1000, []string{"0", "200", "400", "600", "800", "1000"}},
		{0, 0.00012, []string{"0", "0.2e-4", "0.4e-4", "0.6e-4", "0.8e-4", "1.0e-4", "1.2e-4"}},
		{9e-4, 1.1e-3, []string{"0.90e-3", "0.95e-3", "1.00e-3", "1.05e-3", "1.10e-3"}},
		{-1, 1, []string{"-1.0", "-0.5", "0", "0.5", "1.0"}},
		{5, 5, []string{"4.4", "4.6", "4.8", "5.0", "5.2", "5.4", "5.6"}},
		{0, 0, []string{"-1.0", "-0.5", "0", "0.5", "1.0"}},
		{1e6, 5e6, []string{"1e6", "2e6", "3e6", "4e6", "5e6"}},
	}
	for _, tc := range tests {
		ts, lo, hi := linearTicks(tc.lo, tc.hi, 6)
		var got []string
		for _, tk := range ts {
			got = append(got, tk.label)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("linearTicks(%g, %g) = %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
		if lo > tc.lo || hi < tc.hi {
			t.Errorf("linearTicks(%g, %g) range [%g, %g] does not cover the data", tc.lo, tc.hi, lo, hi)
		}
	}
	logs := []struct {
		lo, hi float64
		want   []string
	}{
		{1e-4, 1e-2, []string{"1e-4", "2e-4", "5e-4", "1e-3", "2e-3", "5e-3", "0.01"}},
		{3e-5, 2e-3, []string{"1e-5", "1e-4", "1e-3", "0.01"}},
		{1e-3, 1e-3, []string{"1e-3", "2e-3", "5e-3", "0.01"}},
		{1e-12, 1, []string{"1e-12", "1e-10", "1e-8", "1e-6", "1e-4", "0.01", "1"}},
	}
	for _, tc := range logs {
		ts, lo, hi := logTicks(tc.lo, tc.hi)
		var got []string
		for _, tk := range ts {
			got = append(got, tk.label)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("logTicks(%g, %g) = %q, want %q", tc.lo, tc.hi, got, tc.want)
		}
		if lo > tc.lo || hi < tc.hi {
			t.Errorf("logTicks(%g, %g) range [%g, %g]", tc.lo, tc.hi, lo, hi)
		}
	}
}

// TestLogY: on a log y axis each decade takes the same height, the ticks are powers of ten (with
// 2 and 5 between them) covering the data, a point ≤ 0 is skipped, and an error bar reaching
// below zero is cut at the axis.
func TestLogY(t *testing.T) {
	c := &Chart{LogY: true, Series: []Series{{Name: "a", X: []float64{1, 2, 3, 4}, Y: []float64{95, 600, 0, 140}, Err: []float64{200, 50, 0, 1}}}}
	l := c.layout()
	if l.y0 != 10 || l.y1 != 1000 {
		t.Fatalf("y axis %g…%g, want 10…1000", l.y0, l.y1)
	}
	d1, d2 := l.py(10)-l.py(100), l.py(100)-l.py(1000)
	if math.Abs(d1-d2) > 1e-9 || d1 <= 0 {
		t.Fatalf("decades take %g and %g pixels", d1, d2)
	}
	if l.py(-105) != l.bottom {
		t.Fatalf("an error bar's end below zero maps to row %g, want the axis %g", l.py(-105), l.bottom)
	}
	var labels []string
	for _, tk := range l.yt {
		labels = append(labels, tk.label)
	}
	if got := strings.Join(labels, " "); got != "10 20 50 100 200 500 1000" {
		t.Fatalf("ticks %q", got)
	}
	segs := l.segments(c.Series[0])
	if len(segs) != 2 || len(segs[0]) != 2 || len(segs[1]) != 1 {
		t.Fatalf("segments %v, want the line broken at the point y = 0", segs)
	}
	for _, w := range []func(string) error{c.WriteSVG, c.WritePNG} {
		if err := w(filepath.Join(t.TempDir(), "c")); err != nil {
			t.Fatal(err)
		}
	}
}
