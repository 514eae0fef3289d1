package fetch

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func tarOf(t *testing.T, entries map[string]string, typ byte) *tar.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for name, body := range entries {
		h := &tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: typ}
		if typ == tar.TypeSymlink {
			h.Size, h.Linkname = 0, body
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return tar.NewReader(&buf)
}

func TestExtractRejectsTraversal(t *testing.T) {
	for _, name := range []string{"../evil", "package/../../evil", "/etc/evil", "a\\..\\evil"} {
		dest := t.TempDir()
		err := extractTar(tarOf(t, map[string]string{name: "x"}, tar.TypeReg), dest)
		if err == nil {
			t.Errorf("entry %q: extraction succeeded, want an error", name)
		}
	}
	dest := t.TempDir()
	if err := extractTar(tarOf(t, map[string]string{"package/link": "/etc/passwd"}, tar.TypeSymlink), dest); err == nil {
		t.Errorf("symlink entry extracted, want an error")
	}
}

func TestExtractRegular(t *testing.T) {
	dest := t.TempDir()
	if err := extractTar(tarOf(t, map[string]string{"package/dist/a.json": "{}", "package/b": "bb"}, tar.TypeReg), dest); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dest, "package/b"))
	if err != nil || string(b) != "bb" {
		t.Fatalf("got %q, %v", b, err)
	}
}

func TestPresentNeedsStamp(t *testing.T) {
	cache := t.TempDir()
	p := Package{Name: "x", SHA256: "abc", Check: []string{"f"}}
	if p.Present(cache) {
		t.Fatal("empty cache reported present")
	}
	os.MkdirAll(p.Dir(cache), 0o755)
	os.WriteFile(filepath.Join(p.Dir(cache), "f"), nil, 0o644)
	if p.Present(cache) {
		t.Fatal("unstamped folder reported present")
	}
	os.WriteFile(filepath.Join(p.Dir(cache), stampName), []byte("abc\n"), 0o644)
	if !p.Present(cache) {
		t.Fatal("stamped folder not reported present")
	}
}

func TestCacheDirEnv(t *testing.T) {
	t.Setenv("SINGLORA_CACHE", "/some/where")
	if got := CacheDir(); got != "/some/where" {
		t.Fatalf("CacheDir = %q", got)
	}
	t.Setenv("SINGLORA_CACHE", "")
	if got := CacheDir(); !strings.HasSuffix(got, ".cache") {
		t.Fatalf("CacheDir = %q", got)
	}
}

func TestExtractKeep(t *testing.T) {
	dest := t.TempDir()
	tr := tarOf(t, map[string]string{"package/sotu/data/a.json": "a", "package/sotu/database/x": "x",
		"package/spam/b": "b", "package/LICENSE": "l"}, tar.TypeReg)
	if err := extractTarKeep(tr, dest, []string{"package/sotu/data", "package/LICENSE"}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"package/sotu/data/a.json": true, "package/LICENSE": true,
		"package/sotu/database/x": false, "package/spam/b": false} {
		_, err := os.Stat(filepath.Join(dest, name))
		if got := err == nil; got != want {
			t.Errorf("%s extracted = %v, want %v", name, got, want)
		}
	}
}
