package plot

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

var (
	white = color.RGBA{0xff, 0xff, 0xff, 0xff}
	black = color.RGBA{0, 0, 0, 0xff}
	grid  = color.RGBA{0xe6, 0xe6, 0xe6, 0xff}
)

// canvas draws on an RGBA image with integer Bresenham lines (no anti-aliasing: each series
// keeps its exact colour) and basicfont's 7×13 bitmap font.
type canvas struct {
	img  *image.RGBA
	clip image.Rectangle
}

func (cv *canvas) set(x, y int, c color.RGBA) {
	if image.Pt(x, y).In(cv.clip) {
		cv.img.SetRGBA(x, y, c)
	}
}

// line draws from (x0, y0) to (x1, y1) with a square brush of size w.
func (cv *canvas) line(fx0, fy0, fx1, fy1 float64, c color.RGBA, w int) {
	x0, y0, x1, y1 := iround(fx0), iround(fy0), iround(fx1), iround(fy1)
	dx, dy := abs(x1-x0), -abs(y1-y0)
	sx, sy := 1, 1
	if x0 > x1 {
		sx = -1
	}
	if y0 > y1 {
		sy = -1
	}
	e := dx + dy
	off := (w - 1) / 2
	for {
		for i := 0; i < w; i++ {
			for j := 0; j < w; j++ {
				cv.set(x0-off+i, y0-off+j, c)
			}
		}
		if x0 == x1 && y0 == y1 {
			return
		}
		e2 := 2 * e
		if e2 >= dy {
			e += dy
			x0 += sx
		}
		if e2 <= dx {
			e += dx
			y0 += sy
		}
	}
}

func (cv *canvas) disc(fx, fy float64, r int, c color.RGBA) {
	x, y := iround(fx), iround(fy)
	for i := -r; i <= r; i++ {
		for j := -r; j <= r; j++ {
			if i*i+j*j <= r*r+r/2 {
				cv.set(x+i, y+j, c)
			}
		}
	}
}

// text draws s with its baseline at y; anchor -1, 0, 1: x is its left, centre or right end.
func (cv *canvas) text(fx, fy float64, s string, c color.RGBA, anchor int) {
	d := &font.Drawer{Dst: cv.img, Src: image.NewUniform(c), Face: basicfont.Face7x13}
	wd := d.MeasureString(s).Round()
	x := iround(fx) - (anchor+1)*wd/2
	d.Dot = fixed.P(x, iround(fy))
	d.DrawString(s)
}

// vtext draws s rotated a quarter turn anticlockwise, centred on (x, y), reading bottom to top.
func (cv *canvas) vtext(fx, fy float64, s string, c color.RGBA) {
	face := basicfont.Face7x13
	d := &font.Drawer{Face: face}
	wd := d.MeasureString(s).Round()
	h := face.Height
	tmp := image.NewAlpha(image.Rect(0, 0, wd, h))
	d.Dst, d.Src = tmp, image.Opaque
	d.Dot = fixed.P(0, face.Ascent)
	d.DrawString(s)
	x0, y0 := iround(fx)-h/2, iround(fy)+wd/2
	for ty := 0; ty < h; ty++ {
		for tx := 0; tx < wd; tx++ {
			if tmp.AlphaAt(tx, ty).A > 127 {
				cv.img.SetRGBA(x0+ty, y0-tx, c)
			}
		}
	}
}

func iround(v float64) int { return int(math.Round(v)) }

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}

// Image rasterises the chart with the same layout as its SVG.
func (c *Chart) Image() *image.RGBA {
	l := c.layout()
	img := image.NewRGBA(image.Rect(0, 0, int(l.w), int(l.h)))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)
	full := &canvas{img: img, clip: img.Bounds()}
	area := &canvas{img: img, clip: image.Rect(iround(l.left)-2, iround(l.top)-2, iround(l.right)+3, iround(l.bottom)+3)}

	full.text((l.left+l.right)/2, 22, c.Title, black, 0)
	for _, t := range l.xt {
		x := l.px(t.v)
		full.line(x, l.top, x, l.bottom, grid, 1)
	}
	for _, t := range l.yt {
		y := l.py(t.v)
		full.line(l.left, y, l.right, y, grid, 1)
	}
	for _, t := range l.xt {
		x := l.px(t.v)
		full.line(x, l.bottom, x, l.bottom+5, black, 1)
		full.text(x, l.bottom+18, t.label, black, 0)
	}
	for _, t := range l.yt {
		y := l.py(t.v)
		full.line(l.left-5, y, l.left, y, black, 1)
		full.text(l.left-8, y+4, t.label, black, 1)
	}
	full.text((l.left+l.right)/2, l.bottom+38, c.XLabel, black, 0)
	full.vtext(16, (l.top+l.bottom)/2, c.YLabel, black)

	for pass := 0; pass < 2; pass++ {
		for _, s := range c.Series {
			if s.Faint != (pass == 0) {
				continue
			}
			w := 2
			if s.Faint {
				w = 1
			}
			for _, seg := range l.segments(s) {
				for i := 1; i < len(seg); i++ {
					area.line(seg[i-1][0], seg[i-1][1], seg[i][0], seg[i][1], s.Color, w)
				}
			}
			for i := range s.X {
				if !finite(s.X[i]) || !finite(s.Y[i]) || (l.logX && s.X[i] <= 0) || (l.logY && s.Y[i] <= 0) {
					continue
				}
				x, y := l.px(s.X[i]), l.py(s.Y[i])
				if s.Err != nil && i < len(s.Err) && s.Err[i] > 0 {
					y0, y1 := l.py(s.Y[i]-s.Err[i]), l.py(s.Y[i]+s.Err[i])
					area.line(x, y0, x, y1, s.Color, 1)
					area.line(x-4, y0, x+4, y0, s.Color, 1)
					area.line(x-4, y1, x+4, y1, s.Color, 1)
				}
				if s.Markers || len(s.X) == 1 || isolated(s, i) {
					area.disc(x, y, 3, s.Color)
				}
			}
		}
	}
	// Axes frame on top of the lines.
	full.line(l.left, l.top, l.right, l.top, black, 1)
	full.line(l.left, l.bottom, l.right, l.bottom, black, 1)
	full.line(l.left, l.top, l.left, l.bottom, black, 1)
	full.line(l.right, l.top, l.right, l.bottom, black, 1)

	i := 0
	for _, s := range c.Series {
		if s.Faint {
			continue
		}
		y := l.legendY(i)
		full.line(l.legendX, y-4, l.legendX+swatchW, y-4, s.Color, 3)
		full.text(l.legendX+swatchW+6, y, l.names[i], black, -1)
		i++
	}
	return img
}

// PNG writes the chart as a PNG image.
func (c *Chart) PNG(w io.Writer) error {
	return png.Encode(w, c.Image())
}

// WritePNG writes the chart to path as PNG, atomically.
func (c *Chart) WritePNG(path string) error {
	return writeAtomic(path, c.PNG)
}
