// Package arch holds a test that keeps the data flowing one way:
// scenario file → plan → (upstreams + faults + gateway) → loadgen → results → verdict.
package arch

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const mod = "github.com/cascadehq/cascade/"

// forbidden lists, per package prefix, the packages it must never import
// (directly or not): lower stages expose hooks instead of reaching up.
var forbidden = map[string][]string{
	"internal/": {"faults", "gateway", "loadgen", "results", "scenarios", "cmd"},
	"faults":    {"gateway", "loadgen", "results", "scenarios", "internal/run", "cmd"},
	"gateway":   {"faults", "loadgen", "results", "scenarios", "internal/run", "cmd"},
	"loadgen":   {"faults", "gateway", "results", "scenarios", "internal/run", "cmd"},
	"results":   {"faults", "gateway", "scenarios", "internal/run", "cmd"},
	"autoscale": {"faults", "gateway", "loadgen", "results", "scenarios", "internal/run", "cmd"},
	"scenarios": {"internal/run", "cmd"},
}

// allowedInternal are the leaf packages everyone may use.
var leaf = []string{"internal/yamlfile", "internal/units", "internal/dist", "internal/cause", "internal/event", "internal/httpsyntax", "internal/precise", "internal/upstreamheader", "internal/owner", "internal/interrupt", "internal/proxyconf"}

func TestImportDirection(t *testing.T) {
	// Open every Go file so the test cache notices edits: go list runs in a
	// subprocess, whose reads the cache cannot see.
	_ = filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			if f, err := os.Open(p); err == nil {
				f.Close()
			}
		}
		return nil
	})
	out, err := exec.Command("go", "list", "-deps", "-f", `{{.ImportPath}}:{{join .Deps " "}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, ":")
		if !strings.HasPrefix(pkg, mod) {
			continue
		}
		rel := strings.TrimPrefix(pkg, mod)
		for prefix, bans := range forbidden {
			if !strings.HasPrefix(rel, prefix) || isLeafUser(rel, prefix) {
				continue
			}
			for _, d := range strings.Fields(deps) {
				if !strings.HasPrefix(d, mod) {
					continue
				}
				drel := strings.TrimPrefix(d, mod)
				for _, ban := range bans {
					if drel == ban || strings.HasPrefix(drel, ban+"/") {
						t.Errorf("%s imports %s: data flows the other way", rel, drel)
					}
				}
			}
		}
	}
}

// isLeafUser exempts internal packages that are not leaves (the run, tools)
// from the leaf rule: only the leaf packages must import nothing above them.
func isLeafUser(rel, prefix string) bool {
	if prefix != "internal/" {
		return false
	}
	for _, l := range leaf {
		if rel == l || strings.HasPrefix(rel, l+"/") {
			return false
		}
	}
	return true
}
