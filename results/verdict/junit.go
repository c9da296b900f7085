package verdict

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"

	"github.com/cascadehq/cascade/results"
)

// JUnitFile is the JUnit XML report in a run directory, beside summary.json,
// for CI systems that show test results (GitHub Actions, GitLab, Jenkins).
const JUnitFile = "junit.xml"

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Name     string       `xml:"name,attr"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Time       float64         `xml:"time,attr"`
	Timestamp  string          `xml:"timestamp,attr,omitempty"`
	Properties []junitProperty `xml:"properties>property,omitempty"`
	Cases      []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      float64       `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes the summary's objectives as JUnit XML: one test suite
// per scenario, one test case per objective; a failed objective's failure
// message carries the measured value and the bound, its text the evidence.
func WriteJUnit(w io.Writer, s *results.Summary) error {
	suite := junitSuite{Name: s.Scenario, Tests: len(s.Objectives), Time: float64(s.Elapsed)}
	if !s.Started.IsZero() {
		suite.Timestamp = s.Started.UTC().Format("2006-01-02T15:04:05")
	}
	suite.Properties = []junitProperty{{"seed", fmt.Sprint(s.Seed)}, {"plan", s.PlanHash}, {"verdict", s.Verdict}}
	if s.Aborted != "" {
		suite.Properties = append(suite.Properties, junitProperty{"aborted", s.Aborted})
	}
	if s.Interrupted {
		suite.Properties = append(suite.Properties, junitProperty{"interrupted", "true"})
	}
	if s.Error != "" {
		suite.Properties = append(suite.Properties, junitProperty{"error", s.Error})
	}
	if s.Rebuilt != nil {
		suite.Properties = append(suite.Properties, junitProperty{"rebuilt_through_s", fmt.Sprint(float64(s.Rebuilt.Through))})
	}
	class := "cascade." + s.Scenario
	for _, o := range s.Objectives {
		c := junitCase{Name: o.Name, Classname: class, SystemOut: o.Evidence}
		if !o.Pass {
			suite.Failures++
			measured := o.Measured
			if measured == "" {
				measured = "n/a"
			}
			c.Failure = &junitFailure{Type: "objective", Message: fmt.Sprintf("measured %s (bound %s)", measured, o.Bound), Text: o.Evidence}
			if o.NotJudged {
				c.Failure = &junitFailure{Type: "not_judged", Message: o.Evidence, Text: o.Evidence}
			}
			c.SystemOut = ""
		}
		suite.Cases = append(suite.Cases, c)
	}
	if s.Interrupted || s.Aborted != "" || s.Error != "" {
		// The run itself did not finish: CI must not read a green suite.
		msg := "the run was interrupted"
		switch {
		case s.Error != "":
			msg = "the run stopped on an error: " + s.Error
		case s.Aborted != "":
			msg = "the run stopped early: " + s.Aborted
		}
		suite.Tests++
		suite.Cases = append(suite.Cases, junitCase{Name: "run completed", Classname: class,
			Failure: &junitFailure{Type: "run", Message: msg, Text: msg}})
		suite.Failures++
	}
	doc := junitSuites{Name: "cascade", Tests: suite.Tests, Failures: suite.Failures, Time: suite.Time, Suites: []junitSuite{suite}}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}

// JUnitString is WriteJUnit into a string.
func JUnitString(s *results.Summary) string {
	var b strings.Builder
	_ = WriteJUnit(&b, s)
	return b.String()
}
