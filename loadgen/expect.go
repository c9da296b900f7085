package loadgen

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/cascadehq/cascade/internal/cause"
)

// MaxCheckedBody is how much of an answer's body Expect.BodyContains looks
// in: enough for any API answer a check is written against, and a bound on
// what the generator copies per request (only for requests that check a
// body).
const MaxCheckedBody = 64 << 10

// Expect is what a request's answer must be to count as a success. Status
// is k6's expectedStatuses: a status it lists counts as a success, even one
// that would otherwise be an error (the 404 a test asks for), and any other
// answer is an error. BodyContains is a check on the body, as a k6 check
// on r.body: an answer that would be a success but lacks the text within
// the first MaxCheckedBody bytes is an error. Both failures count as
// cause.UnexpectedResponse.
type Expect struct {
	Status       []StatusRange // none: the statuses below 400 succeed, as without Expect
	BodyContains []byte        // nil: the body is not checked
}

// StatusRange is a status code (Min == Max) or a class such as 2xx.
type StatusRange struct{ Min, Max int }

func (r StatusRange) String() string {
	if r.Min == r.Max {
		return strconv.Itoa(r.Min)
	}
	if r.Min%100 == 0 && r.Max == r.Min+99 {
		return strconv.Itoa(r.Min/100) + "xx"
	}
	return strconv.Itoa(r.Min) + "-" + strconv.Itoa(r.Max)
}

// ParseStatus reads "200" or "2xx".
func ParseStatus(s string) (StatusRange, error) {
	s = strings.TrimSpace(s)
	if len(s) == 3 && strings.HasSuffix(strings.ToLower(s), "xx") && s[0] >= '1' && s[0] <= '5' {
		lo := int(s[0]-'0') * 100
		return StatusRange{lo, lo + 99}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 100 || n > 599 {
		return StatusRange{}, fmt.Errorf("status %q: expected a code from 100 to 599 or a class such as 2xx", s)
	}
	return StatusRange{n, n}, nil
}

// checksBody reports whether the answer's body must be kept for the check.
func (e *Expect) checksBody() bool { return e != nil && e.BodyContains != nil }

// judge applies e to a complete answer with status and cause c (from the
// status and the cause header); body is its start, truncated at
// MaxCheckedBody. It returns the cause the answer counts as.
func (e *Expect) judge(status int, c cause.Cause, body []byte) cause.Cause {
	if len(e.Status) > 0 {
		if !e.listed(status) {
			return cause.UnexpectedResponse
		}
		if c.IsError() {
			c = cause.OK // a status the request expects is its success
		}
	}
	if e.BodyContains != nil && !c.IsError() && !bytes.Contains(body, e.BodyContains) {
		return cause.UnexpectedResponse
	}
	return c
}

// why says how an answer failed e. Built for the first failure only: a run
// whose every answer fails must not allocate per request.
func (e *Expect) why(status int, body []byte) string {
	if len(e.Status) > 0 && !e.listed(status) {
		return fmt.Sprintf("status %d, expected %s", status, e.statusList())
	}
	return fmt.Sprintf("status %d, body without %q (in its first %d bytes)", status, e.BodyContains, len(body))
}

func (e *Expect) listed(status int) bool {
	for _, r := range e.Status {
		if status >= r.Min && status <= r.Max {
			return true
		}
	}
	return false
}

func (e *Expect) statusList() string {
	parts := make([]string, len(e.Status))
	for i, r := range e.Status {
		parts[i] = r.String()
	}
	return strings.Join(parts, " or ")
}

// UnexpectedError is the first answer of a request that failed its Expect:
// kept as the first error of cause.UnexpectedResponse.
type UnexpectedError struct{ Why string }

func (e *UnexpectedError) Error() string { return "unexpected answer: " + e.Why }
