package gameday

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/http"

	"github.com/cascadehq/cascade/results/report"
)

var (
	//go:embed assets/dashboard.html.tmpl
	dashboardTemplate string
	//go:embed assets/dashboard.js
	dashboardJS string
	//go:embed assets/dashboard.css
	dashboardCSS string
)

var dashboardPage = template.Must(template.New("dashboard").Parse(dashboardTemplate))

// Chart names: the dashboard draws the report's charts, with the report's
// own script.
var dashboardCharts = []chartSlot{
	{report.ChartLatency, "Latency", "p50, p90, p99 and max per second, from the intended send time"},
	{report.ChartRate, "Request rate", "the profile's target (dashed; a gate holds it) against what was sent"},
	{report.ChartOutcomes, "Outcomes", "requests per second by termination cause, and the error rate"},
	{report.ChartBreakers, "Circuit breakers", "each breaker's state"},
	{report.ChartReplicas, "Replicas", "replicas per upstream, ejected or failing health checks"},
}

type chartSlot struct{ Name, Title, Caption string }

type dashboardModel struct {
	Scenario string
	Charts   []chartSlot
	CSS      template.CSS
	JS       template.JS
}

// dashboard is GET /: with ?token= (the URL printed at start) it sets a
// cookie that only this origin sends and redirects to /, so the token
// leaves the address bar; with the cookie it serves the page. The page
// itself holds no token: it reads the stream with the cookie and changes
// nothing (changes go through the CLI, with the token as a bearer).
func (v *server) dashboard(w http.ResponseWriter, r *http.Request) {
	if t := r.URL.Query().Get("token"); t != "" {
		r.Header.Set("Authorization", "Bearer "+t)
		if ok, why := v.authorized(r, false); !ok {
			http.Error(w, why, http.StatusUnauthorized)
			return
		}
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: t, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	if ok, why := v.authorized(r, true); !ok {
		http.Error(w, why+": open the dashboard URL printed when the run started", http.StatusUnauthorized)
		return
	}
	css, js := report.PageAssets()
	m := dashboardModel{Scenario: v.s.p.Name, Charts: dashboardCharts,
		CSS: template.CSS(css + "\n" + dashboardCSS), JS: template.JS(js + "\n" + dashboardJS)}
	var buf bytes.Buffer
	if err := dashboardPage.Execute(&buf, m); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:")
	_, _ = w.Write(buf.Bytes())
}
