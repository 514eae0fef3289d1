package plot

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"image/color"
	"io"
	"strconv"
	"strings"
)

func hex(c color.RGBA) string { return fmt.Sprintf("#%02x%02x%02x", c.R, c.G, c.B) }

func num(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) }

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

// SVG writes the chart as a standalone SVG document. Each series is a <g class="series"> with a
// data-name attribute and a <title>, holding one <path> per unbroken stretch of the line.
func (c *Chart) SVG(w io.Writer) error {
	l := c.layout()
	var b bytes.Buffer
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%g" height="%g" viewBox="0 0 %g %g" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="%g">`+"\n",
		l.w, l.h, l.w, l.h, fontSize)
	p(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	p(`<text class="title" x="%s" y="22" font-size="%g" font-weight="bold" text-anchor="middle">%s</text>`+"\n",
		num((l.left+l.right)/2), titleSize, esc(c.Title))
	p(`<defs><clipPath id="plot-area"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath></defs>`+"\n",
		num(l.left-2), num(l.top-2), num(l.right-l.left+4), num(l.bottom-l.top+4))

	// Grid, ticks and tick labels.
	p(`<g class="grid" stroke="#e6e6e6" stroke-width="1">` + "\n")
	for _, t := range l.xt {
		x := num(l.px(t.v))
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", x, num(l.top), x, num(l.bottom))
	}
	for _, t := range l.yt {
		y := num(l.py(t.v))
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(l.left), y, num(l.right), y)
	}
	p("</g>\n")
	p(`<g class="axes" stroke="#000000" stroke-width="1" fill="none">` + "\n")
	p(`<rect x="%s" y="%s" width="%s" height="%s"/>`+"\n", num(l.left), num(l.top), num(l.right-l.left), num(l.bottom-l.top))
	for _, t := range l.xt {
		x := num(l.px(t.v))
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", x, num(l.bottom), x, num(l.bottom+5))
	}
	for _, t := range l.yt {
		y := num(l.py(t.v))
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s"/>`+"\n", num(l.left-5), y, num(l.left), y)
	}
	p("</g>\n")
	p(`<g class="tick-labels" fill="#000000">` + "\n")
	for _, t := range l.xt {
		p(`<text x="%s" y="%s" text-anchor="middle">%s</text>`+"\n", num(l.px(t.v)), num(l.bottom+18), esc(t.label))
	}
	for _, t := range l.yt {
		p(`<text x="%s" y="%s" text-anchor="end">%s</text>`+"\n", num(l.left-8), num(l.py(t.v)+4), esc(t.label))
	}
	p("</g>\n")
	p(`<text class="x-label" x="%s" y="%s" text-anchor="middle">%s</text>`+"\n",
		num((l.left+l.right)/2), num(l.bottom+38), esc(c.XLabel))
	p(`<text class="y-label" x="0" y="0" text-anchor="middle" transform="translate(16 %s) rotate(-90)">%s</text>`+"\n",
		num((l.top+l.bottom)/2), esc(c.YLabel))

	// Series: faint ones first so they lie underneath.
	for pass := 0; pass < 2; pass++ {
		for _, s := range c.Series {
			if s.Faint != (pass == 0) {
				continue
			}
			col, width := hex(s.Color), "1.8"
			if s.Faint {
				width = "1"
			}
			class := "series"
			if s.Faint {
				class = "series raw"
			}
			p(`<g class="%s" data-name="%s" clip-path="url(#plot-area)"><title>%s</title>`+"\n", class, esc(s.Name), esc(s.Name))
			segs := l.segments(s)
			for _, seg := range segs {
				var d strings.Builder
				for i, pt := range seg {
					if i == 0 {
						d.WriteString("M")
					} else {
						d.WriteString(" L")
					}
					d.WriteString(num(pt[0]) + " " + num(pt[1]))
				}
				p(`<path d="%s" fill="none" stroke="%s" stroke-width="%s" stroke-linejoin="round" stroke-linecap="round"/>`+"\n", d.String(), col, width)
			}
			for i := range s.X {
				if !finite(s.X[i]) || !finite(s.Y[i]) || (l.logX && s.X[i] <= 0) || (l.logY && s.Y[i] <= 0) {
					continue
				}
				x, y := l.px(s.X[i]), l.py(s.Y[i])
				if s.Err != nil && i < len(s.Err) && s.Err[i] > 0 {
					y0, y1 := l.py(s.Y[i]-s.Err[i]), l.py(s.Y[i]+s.Err[i])
					p(`<path class="error-bar" d="M%s %s L%s %s M%s %s L%s %s M%s %s L%s %s" stroke="%s" stroke-width="1.2" fill="none"/>`+"\n",
						num(x), num(y0), num(x), num(y1), num(x-4), num(y0), num(x+4), num(y0), num(x-4), num(y1), num(x+4), num(y1), col)
				}
				if s.Markers || len(s.X) == 1 || isolated(s, i) {
					p(`<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", num(x), num(y), col)
				}
			}
			p("</g>\n")
		}
	}

	// Legend.
	p(`<g class="legend">` + "\n")
	i := 0
	for _, s := range c.Series {
		if s.Faint {
			continue
		}
		y := l.legendY(i)
		p(`<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3"/>`+"\n",
			num(l.legendX), num(y-4), num(l.legendX+swatchW), num(y-4), hex(s.Color))
		p(`<text x="%s" y="%s">%s</text>`+"\n", num(l.legendX+swatchW+6), num(y), esc(l.names[i]))
		i++
	}
	p("</g>\n</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// isolated reports whether point i of s has no finite neighbour, so a line would not show it.
func isolated(s Series, i int) bool {
	ok := func(j int) bool { return j >= 0 && j < len(s.X) && finite(s.X[j]) && finite(s.Y[j]) }
	return !ok(i-1) && !ok(i+1)
}

// WriteSVG writes the chart to path as SVG, atomically.
func (c *Chart) WriteSVG(path string) error {
	return writeAtomic(path, c.SVG)
}
