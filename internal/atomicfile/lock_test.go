package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestLockExcludes: a second Lock of the same path fails with ErrInUse while the first is held
// (a separate open file description, as another process has), and succeeds once it is released.
func TestLockExcludes(t *testing.T) {
	dst := filepath.Join(t.TempDir(), "merged")
	unlock, ok, err := Lock(dst)
	if err != nil || !ok {
		t.Fatalf("Lock: ok %v err %v", ok, err)
	}
	if _, _, err := Lock(dst); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Lock: %v, want ErrInUse", err)
	}
	unlock()
	unlock2, _, err := Lock(dst)
	if err != nil {
		t.Fatalf("Lock after release: %v", err)
	}
	unlock2()
}

// TestCleanTemps: the temporary siblings of dst — files and folders a killed writer left — go,
// other files (another output's temporaries, the lock) stay; with dst missing, a single ".old"
// copy is put back as dst.
func TestCleanTemps(t *testing.T) {
	for _, tc := range []struct {
		name       string
		dstExists  bool
		temps      []string // siblings created (folders end in /)
		wantBack   string   // the sibling that becomes dst
		wantRemain []string
	}{
		{"stale file and folder", true, []string{".merged.tmp-123", ".merged.tmp-456/"}, "", nil},
		{"old copy put back", false, []string{".merged.tmp-7/", ".merged.tmp-8.old/"}, ".merged.tmp-8.old", nil},
		{"two old copies: both kept", false, []string{".merged.tmp-1.old/", ".merged.tmp-2.old/", ".merged.tmp-3"}, "", []string{".merged.tmp-1.old", ".merged.tmp-2.old"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "merged")
			if tc.dstExists {
				if err := os.WriteFile(dst, []byte("current"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range append(tc.temps, ".other.tmp-1", "merged.txt") {
				p := filepath.Join(dir, n)
				if n[len(n)-1] == '/' {
					if err := os.MkdirAll(filepath.Join(p, "sub"), 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.WriteFile(filepath.Join(p, "sub", "x"), []byte(n), 0o644); err != nil {
						t.Fatal(err)
					}
				} else if err := os.WriteFile(p, []byte(n), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			unlock, ok, err := Lock(dst)
			if err != nil || !ok {
				t.Fatal(ok, err)
			}
			defer unlock()
			removed, err := CleanTemps(dst)
			if err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(dir)
			var left []string
			for _, e := range entries {
				left = append(left, e.Name())
			}
			want := append([]string{".merged.lock", ".other.tmp-1", "merged.txt"}, tc.wantRemain...)
			if tc.dstExists || tc.wantBack != "" {
				want = append(want, "merged")
			}
			slices.Sort(want)
			if !slices.Equal(left, want) {
				t.Fatalf("left %v (removed %v), want %v", left, removed, want)
			}
			if tc.wantBack != "" {
				b, err := os.ReadFile(filepath.Join(dst, "sub", "x"))
				if err != nil || string(b) != tc.wantBack+"/" {
					t.Fatalf("dst holds %q (%v), want the copy from %s", b, err, tc.wantBack)
				}
			}
		})
	}
}
