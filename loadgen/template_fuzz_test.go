package loadgen

import (
	"strings"
	"testing"
)

// Templates and data files come from scenario files: whatever parses must
// render without a panic, and a static template must render to its source.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/items/{{seq}}", "/u/{{users.name}}?id={{rand_int 1 100}}", "{{uuid}}-{{rand_id}}",
		"{{rand_int -9223372036854775808 9223372036854775807}}", "{{rand_int 5 5}}", "{{", "}}{{seq", "{{ }}", "{{items.sku}}"} {
		f.Add(s, "id,name\n1,ann\n2,bob\n", uint64(7), uint64(3))
	}
	f.Fuzz(func(t *testing.T, src, csv string, seed, seq uint64) {
		var data []*Dataset
		if ds, err := ParseCSV("users", []byte(csv)); err == nil {
			if len(ds.Rows) == 0 {
				t.Fatalf("ParseCSV(%q) accepted no rows", csv)
			}
			data = append(data, ds)
		}
		if ds, err := ParseJSON("items", []byte(csv)); err == nil {
			if len(ds.Rows) == 0 {
				t.Fatalf("ParseJSON(%q) accepted no rows", csv)
			}
			data = append(data, ds)
		}
		tpl, err := ParseTemplate(src, data)
		if err != nil {
			return
		}
		out := tpl.Render(seed, seq, data)
		if tpl.Static() && out != src {
			t.Fatalf("static template %q rendered %q", src, out)
		}
		if !strings.Contains(src, "{{") && out != src {
			t.Fatalf("template without variables %q rendered %q", src, out)
		}
	})
}
