package plan

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/cascadehq/cascade/internal/yamlfile"
)

// FuzzCompile feeds arbitrary bytes through decoding and planning. Whatever
// the input, the compiler must return a plan or positioned errors: never
// panic, never hang, never an error without a file position.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(merges))
	files, _ := filepath.Glob("../examples/*.yaml")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p, err := CompileBytes("fuzz.yaml", src, Options{})
		if err == nil {
			if p == nil || p.Duration <= 0 || len(p.Phases) == 0 {
				t.Fatalf("a valid plan must have a duration and the run phase: %+v", p)
			}
			return
		}
		var es yamlfile.Errors
		var e *yamlfile.Error
		switch {
		case errors.As(err, &es):
			for _, x := range es {
				if x.File != "fuzz.yaml" || x.Line < 1 {
					t.Fatalf("unpositioned error %q in %v", x.Error(), err)
				}
			}
		case errors.As(err, &e):
			if e.File != "fuzz.yaml" || e.Line < 1 {
				t.Fatalf("unpositioned error %q", err)
			}
		default:
			t.Fatalf("error of type %T is not positioned: %v", err, err)
		}
	})
}
