package loadgen

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

func testData(t *testing.T) []*Dataset {
	t.Helper()
	users, err := ParseCSV("users", []byte("id,name\n1,ann\n2,bob\n3,cy\n"))
	if err != nil {
		t.Fatal(err)
	}
	items, err := ParseJSON("items", []byte(`[{"sku":"a-1","price":9.5},{"sku":"b-2","price":12,"sale":true}]`))
	if err != nil {
		t.Fatal(err)
	}
	return []*Dataset{users, items}
}

func TestTemplateRender(t *testing.T) {
	data := testData(t)
	cases := []struct {
		src  string
		seq  uint64
		want string
	}{
		{"/plain", 5, "/plain"},
		{"/items/{{seq}}", 41, "/items/41"},
		{"/u/{{ users.id }}/{{users.name}}", 0, "/u/1/ann"},
		{"/u/{{users.name}}", 4, "/u/bob"}, // rows in order, wrapping around
		{`{"sku":"{{items.sku}}","p":{{items.price}},"s":"{{items.sale}}"}`, 1, `{"sku":"b-2","p":12,"s":"true"}`},
		{`{{items.sale}}`, 0, ``}, // a key missing from a JSON row is empty
		{"/r/{{rand_int 7 7}}", 3, "/r/7"},
	}
	for _, tc := range cases {
		tpl, err := ParseTemplate(tc.src, data)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if got := tpl.Render(42, tc.seq, data); got != tc.want {
			t.Errorf("%q seq %d = %q, want %q", tc.src, tc.seq, got, tc.want)
		}
		if tpl.Static() != !strings.Contains(tc.src, "{{") {
			t.Errorf("%q: Static() = %v", tc.src, tpl.Static())
		}
	}
}

func TestTemplateRandomIsSeeded(t *testing.T) {
	tpl, err := ParseTemplate("{{rand_int 1 6}} {{rand_int 1 6}} {{rand_id}} {{uuid}}", nil)
	if err != nil {
		t.Fatal(err)
	}
	uuid := regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
	counts := map[string]int{}
	same := 0
	for seq := uint64(0); seq < 6000; seq++ {
		a, b := tpl.Render(1, seq, nil), tpl.Render(1, seq, nil)
		if a != b {
			t.Fatalf("seq %d rendered %q then %q", seq, a, b)
		}
		if tpl.Render(2, seq, nil) == a {
			t.Fatalf("seeds 1 and 2 render the same %q", a)
		}
		f := strings.Fields(a)
		if len(f[2]) != 16 || !uuid.MatchString(f[3]) {
			t.Fatalf("rand_id %q or uuid %q malformed", f[2], f[3])
		}
		n, _ := strconv.Atoi(f[0])
		if n < 1 || n > 6 {
			t.Fatalf("rand_int 1 6 gave %d", n)
		}
		counts[f[0]]++
		if f[0] == f[1] {
			same++
		}
	}
	for face, n := range counts {
		if n < 850 || n > 1150 {
			t.Errorf("face %s came up %d times of 6000", face, n)
		}
	}
	// Two rand_ints in one request are independent draws: equal 1/6 of the time.
	if same < 800 || same > 1200 {
		t.Errorf("two draws equal %d times of 6000, want ≈1000", same)
	}
}

func TestTemplateRandomRows(t *testing.T) {
	data := testData(t)
	data[0].Random = true
	tpl, _ := ParseTemplate("{{users.id}}-{{users.name}}", data)
	seen := map[string]int{}
	for seq := uint64(0); seq < 3000; seq++ {
		seen[tpl.Render(9, seq, data)]++
	}
	// The same row for both columns, every row used, roughly evenly.
	for row, n := range seen {
		if row != "1-ann" && row != "2-bob" && row != "3-cy" {
			t.Fatalf("columns from different rows: %q", row)
		}
		if n < 850 || n > 1150 {
			t.Errorf("row %s picked %d times of 3000", row, n)
		}
	}
}

func TestTemplateErrors(t *testing.T) {
	data := testData(t)
	spaced, err := ParseCSV("spaced", []byte("user id,name\n1,ann\n"))
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, spaced)
	for _, tc := range []struct{ src, msg string }{
		{"/a/{{seq", "without a closing"},
		{"/a/{{}}", "empty"},
		{"/a/{{nope}}", "unknown variable"},
		{"/a/{{rand_int 5}}", "takes 2 argument"},
		{"/a/{{rand_int 9 1}}", "MIN <= MAX"},
		{"/a/{{rand_int x 1}}", "must be integers"},
		{"/a/{{seq 1}}", "takes 0 argument"},
		{"/a/{{users.email}}", `no column "email"`},
		{"/a/{{orders.id}}", `unknown data set "orders"`},
		// A header with a space can never be named: say so, not
		// "unknown variable".
		{"/a/{{spaced.user id}}", `column "user id" of data set "spaced" has a space in its name, which a template cannot write: rename it in the file's header (e.g. "user_id")`},
		{"/a/{{urlencode spaced.user id}}", `column "user id" of data set "spaced" has a space`},
	} {
		_, err := ParseTemplate(tc.src, data)
		if err == nil || !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.src, err, tc.msg)
		}
	}
}

func TestDatasetErrors(t *testing.T) {
	for _, tc := range []struct {
		csv, json string
		msg       string
	}{
		{csv: "", msg: "empty CSV"},
		{csv: "id\n", msg: "no rows"},
		{csv: "id,id\n1,2\n", msg: "unique"},
		{csv: "id,name\n1\n", msg: "wrong number of fields"},
		{json: `{"a":1}`, msg: "array of objects"},
		{json: `[{"a":{"b":1}}]`, msg: "only strings, numbers"},
		{json: `[]`, msg: "no rows"},
		// What follows the array was dropped: a second array's rows.
		{json: "[{\"a\":1}]\n[{\"a\":2}]\n", msg: "line 2, column 1: expected the end of the file after the array"},
		{json: "[{\"a\":1}] x", msg: "line 1, column 11: expected the end of the file"},
		{json: "[{\"a\":1},\n {\"a\":2,}]", msg: "line 2, column 9: expected a JSON array of objects"},
		{json: `[{"a":1},{"a":{"b":1}}]`, msg: `row 2, key "a"`}, // from 1, as a CSV file's rows
	} {
		var err error
		if tc.json != "" {
			_, err = ParseJSON("d", []byte(tc.json))
		} else {
			_, err = ParseCSV("d", []byte(tc.csv))
		}
		if err == nil || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q%q: error %v, want %q", tc.csv, tc.json, err, tc.msg)
		}
	}
	if _, err := ReadDataset("d", "x.txt", false); err == nil || !strings.Contains(err.Error(), ".csv") {
		t.Errorf("unknown extension: %v", err)
	}
}

// A byte-order mark (Excel's "CSV UTF-8") is not part of the first
// column's name, and a missing column's message quotes the names, so that
// an invisible character would show.
func TestDatasetByteOrderMark(t *testing.T) {
	ds, err := ParseCSV("u", []byte("\xef\xbb\xbfuser_id,region\n1,eu\n"))
	if err != nil {
		t.Fatal(err)
	}
	if ds.Columns[0] != "user_id" {
		t.Errorf("first column %q", ds.Columns[0])
	}
	if _, err := ParseJSON("j", []byte("\xef\xbb\xbf[{\"a\":1}]")); err != nil {
		t.Errorf("JSON with a byte-order mark: %v", err)
	}
	_, err = ParseTemplate("/u/{{u.id}}", []*Dataset{ds})
	if err == nil || !strings.Contains(err.Error(), `(columns: "user_id", "region")`) {
		t.Errorf("missing column: %v", err)
	}
}

func TestRenderRequest(t *testing.T) {
	data := testData(t)
	rs, err := compileRequests([]Request{
		{Path: "/static"},
		{Method: "POST", Path: "/u/{{users.id}}", Header: map[string][]string{"X-Id": {"{{rand_id}}"}, "X-Seq": {"{{seq}}"}},
			Body: []byte(`{"name":"{{users.name}}"}`)},
	}, data, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !rs.reqs[0].static || rs.reqs[1].static {
		t.Fatal("static flags wrong")
	}
	var r rendering
	rs.render(1, 1, &r)
	if string(r.path) != "/u/2" || string(r.body) != `{"name":"bob"}` || len(r.header) != 2 ||
		r.header[0][0] != "X-Id" || len(r.header[0][1]) != 16 || r.header[1] != [2]string{"X-Seq", "1"} {
		t.Fatalf("rendered %q %q %q", r.path, r.body, r.header)
	}
}

func BenchmarkRenderTemplated(b *testing.B) {
	users, _ := ParseCSV("users", []byte("id,name\n1,ann\n2,bob\n"))
	rs, err := compileRequests([]Request{{Method: "POST", Path: "/u/{{users.id}}?r={{rand_int 1 1000}}",
		Header: map[string][]string{"X-Seq": {"{{seq}}"}}, Body: []byte(`{"id":"{{uuid}}"}`)}}, []*Dataset{users}, 1)
	if err != nil {
		b.Fatal(err)
	}
	var r rendering
	b.ReportAllocs()
	for i := range b.N {
		rs.render(0, uint64(i), &r)
	}
}

// A body read from a file is a template too; an error in it must say where
// (line and column) and quote only the spot, not the whole file: an 8 MB
// body used to be printed in full, on one line, as the error.
func TestTemplateErrorInLongSource(t *testing.T) {
	src := strings.Repeat("x", 5000) + "\nline two\n  {{seq\n" + strings.Repeat("y", 5000)
	_, err := ParseTemplate(src, nil)
	if err == nil || !errors.Is(err, ErrTemplate) {
		t.Fatalf("error %v, want ErrTemplate", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "line 3, column 3") || !strings.Contains(msg, "without a closing") {
		t.Errorf("error %.200q does not say line 3, column 3 and what is wrong", msg)
	}
	if len(msg) > 200 {
		t.Errorf("error is %d bytes long: it quotes the template instead of the spot: %.300q", len(msg), msg)
	}
	// Binary between a stray {{ and a }} is not printed in full either.
	src = "\x00\x01 {{" + strings.Repeat("\xfe\x07", 3000) + "}} end\n"
	_, err = ParseTemplate(src, nil)
	if err == nil || !strings.Contains(err.Error(), "unknown variable") || len(err.Error()) > 400 {
		t.Errorf("binary body: error %.400q, want a short one saying unknown variable", err)
	}
	// A short one-line template (a path) is still quoted whole.
	_, err = ParseTemplate("/a/{{nope}}", nil)
	if err == nil || !strings.Contains(err.Error(), `"/a/{{nope}}"`) {
		t.Errorf("short template: error %v does not quote it", err)
	}
}

func TestTemplateEncodings(t *testing.T) {
	data, err := ParseCSV("q", []byte("text\n\"a b#c&d=e+f/g?h%i\"\n\"ünï \"\"quoted\"\"\\\n\tline\u2028\"\nplain-._!~*'()\n"))
	if err != nil {
		t.Fatal(err)
	}
	ds := []*Dataset{data}
	for _, tc := range []struct {
		src  string
		seq  uint64
		want string
	}{
		{"/s/{{urlencode q.text}}?q={{urlencode q.text}}", 0, "/s/a%20b%23c%26d%3De%2Bf%2Fg%3Fh%25i?q=a%20b%23c%26d%3De%2Bf%2Fg%3Fh%25i"},
		{"/s/{{ urlencode  q.text }}", 1, "/s/%C3%BCn%C3%AF%20%22quoted%22%5C%0A%09line%E2%80%A8"},
		{"/s/{{urlencode q.text}}", 2, "/s/plain-._!~*'()"}, // encodeURIComponent's unreserved set
		{`{"q":{{json q.text}}}`, 0, `{"q":"a b#c&d=e+f/g?h%i"}`},
		{`{"q":{{json q.text}}}`, 1, `{"q":"ünï \"quoted\"\\\n\tline\u2028"}`},
	} {
		tpl, err := ParseTemplate(tc.src, ds)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		if got := tpl.Render(1, tc.seq, ds); got != tc.want {
			t.Errorf("%q row %d = %s, want %s", tc.src, tc.seq, got, tc.want)
		}
	}
	for _, tc := range []struct{ src, msg string }{
		{"{{urlencode}}", "takes one data column"},
		{"{{urlencode seq}}", "takes one data column"},
		{"{{json q.text q.text}}", "takes one data column"},
		{"{{json q.nope}}", `no column "nope"`},
		{"{{json x.text}}", `unknown data set "x"`},
	} {
		if _, err := ParseTemplate(tc.src, ds); err == nil || !errors.Is(err, ErrTemplate) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %v, want one mentioning %q", tc.src, err, tc.msg)
		}
	}
}
