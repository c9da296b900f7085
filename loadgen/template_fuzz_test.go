package loadgen

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"
)

// Templates and data files come from scenario files: whatever parses must
// render without a panic, and a static template must render to its source.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"/items/{{seq}}", "/u/{{users.name}}?id={{rand_int 1 100}}", "{{uuid}}-{{rand_id}}",
		"{{rand_int -9223372036854775808 9223372036854775807}}", "{{rand_int 5 5}}", "{{", "}}{{seq", "{{ }}", "{{items.sku}}", "{{urlencode users.name}}", "{{json users.name}}"} {
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

// An encoded data value decodes back to itself: any string through
// urlencode is one path segment that url.PathUnescape (and a query parser)
// reads back whole; through json it is one JSON string that
// encoding/json reads back, the same when the value is UTF-8.
func FuzzTemplateEncodings(f *testing.F) {
	for _, s := range []string{"a b", "#&=+/?%", "ü\u2028\"\\\n\x00", "\xff\xfe", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		ds := []*Dataset{{Name: "d", Columns: []string{"v"}, Rows: [][]string{{v}}}}
		u, err := ParseTemplate("{{urlencode d.v}}", ds)
		if err != nil {
			t.Fatal(err)
		}
		enc := u.Render(1, 0, ds)
		if strings.ContainsAny(enc, "/?#&=+ ") || CheckPath("/p/"+enc+"?q="+enc) != nil {
			t.Fatalf("urlencode %q = %q: not one safe segment", v, enc)
		}
		if dec, err := url.PathUnescape(enc); err != nil || dec != v {
			t.Fatalf("urlencode %q = %q, decodes to %q (%v)", v, enc, dec, err)
		}
		if q, err := url.ParseQuery("k=" + enc); err != nil || q.Get("k") != v {
			t.Fatalf("urlencode %q = %q, as a query value reads %q (%v)", v, enc, q.Get("k"), err)
		}
		j, err := ParseTemplate("{{json d.v}}", ds)
		if err != nil {
			t.Fatal(err)
		}
		var back string
		out := j.Render(1, 0, ds)
		if err := json.Unmarshal([]byte(out), &back); err != nil {
			t.Fatalf("json %q = %s: %v", v, out, err)
		}
		if utf8.ValidString(v) && back != v {
			t.Fatalf("json %q = %s, reads back %q", v, out, back)
		}
	})
}
