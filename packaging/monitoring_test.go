package packaging

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAlertRules: promtool (Debian's prometheus package) accepts the
// shipped alert rules. cmd/vrift's TestMonitoringMetrics checks their
// metrics against a real daemon.
func TestAlertRules(t *testing.T) {
	requireTool(t, "promtool", "prometheus")
	out, err := exec.Command("promtool", "check", "rules", "monitoring/prometheus-rules.yml").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// grafanaPanel is the part of Grafana's dashboard JSON model a panel must
// get right to import and render.
type grafanaPanel struct {
	ID         *int            `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y *int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
	FieldConfig *struct {
		Defaults  map[string]any `json:"defaults"`
		Overrides []any          `json:"overrides"`
	} `json:"fieldConfig"`
}

// TestDashboardSchema checks the Grafana dashboard against the dashboard
// JSON model (schemaVersion 39): the top-level fields an import needs, the
// types of each, panels of known types with unique ids, a gridPos inside
// the 24-column grid and overlapping no other panel, targets with unique
// refIds and a query, and data sources that name the dashboard's own
// Prometheus variable. A misspelt top-level or panel field is refused.
func TestDashboardSchema(t *testing.T) {
	b, err := os.ReadFile("monitoring/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	known := map[string]bool{"__inputs": true, "annotations": true, "description": true, "editable": true, "graphTooltip": true,
		"links": true, "panels": true, "refresh": true, "schemaVersion": true, "style": true, "tags": true, "templating": true,
		"time": true, "timepicker": true, "timezone": true, "title": true, "uid": true, "version": true, "weekStart": true, "id": true}
	for k := range raw {
		if !known[k] {
			t.Errorf("unknown top-level field %q", k)
		}
	}
	var d struct {
		Title         string `json:"title"`
		UID           string `json:"uid"`
		SchemaVersion int    `json:"schemaVersion"`
		Editable      bool   `json:"editable"`
		Time          struct{ From, To string }
		Refresh       string            `json:"refresh"`
		Tags          []string          `json:"tags"`
		Panels        []json.RawMessage `json:"panels"`
		Templating    struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard model: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.UID) > 40 || d.SchemaVersion < 36 || d.Time.From == "" || d.Time.To == "" {
		t.Errorf("title %q, uid %q, schemaVersion %d, time %+v: want all set (uid at most 40 characters)", d.Title, d.UID, d.SchemaVersion, d.Time)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Errorf("no datasource variable: %v", vars)
	}
	types := map[string]bool{"row": true, "timeseries": true, "stat": true, "gauge": true, "bargauge": true, "table": true, "text": true}
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	queries := 0
	for i, rp := range d.Panels {
		var p grafanaPanel
		var loose map[string]json.RawMessage
		json.Unmarshal(rp, &loose)
		for k := range loose {
			switch k {
			case "id", "type", "title", "description", "datasource", "gridPos", "targets", "fieldConfig", "options", "collapsed", "panels":
			default:
				t.Errorf("panel %d: unknown field %q", i, k)
			}
		}
		if err := json.Unmarshal(rp, &p); err != nil {
			t.Errorf("panel %d: %v", i, err)
			continue
		}
		if p.ID == nil || ids[*p.ID] {
			t.Errorf("panel %d %q: missing or duplicate id", i, p.Title)
		} else {
			ids[*p.ID] = true
		}
		if !types[p.Type] || p.Title == "" {
			t.Errorf("panel %d: type %q title %q", i, p.Type, p.Title)
		}
		g := p.GridPos
		if g == nil || g.H == nil || g.W == nil || g.X == nil || g.Y == nil || *g.W < 1 || *g.H < 1 || *g.X < 0 || *g.Y < 0 || *g.X+*g.W > 24 {
			t.Errorf("panel %q: bad gridPos %s", p.Title, loose["gridPos"])
			continue
		}
		for x := *g.X; x < *g.X+*g.W; x++ {
			for y := *g.Y; y < *g.Y+*g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					t.Errorf("panel %q overlaps %q at (%d,%d)", p.Title, other, x, y)
					goto next
				}
				taken[cell{x, y}] = p.Title
			}
		}
	next:
		if p.Type == "row" {
			continue
		}
		if p.FieldConfig == nil || p.FieldConfig.Defaults == nil {
			t.Errorf("panel %q: no fieldConfig.defaults", p.Title)
		}
		if !strings.Contains(string(p.Datasource), `"${datasource}"`) {
			t.Errorf("panel %q: datasource %s is not the dashboard's variable", p.Title, p.Datasource)
		}
		refs := map[string]bool{}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] || strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target refId %q expr %q", p.Title, tg.RefID, tg.Expr)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, `job=~"$job"`) {
				t.Errorf("panel %q: %s does not filter by the job variable", p.Title, tg.Expr)
			}
			queries++
		}
	}
	if queries < 20 {
		t.Errorf("only %d queries", queries)
	}
	// Each query's PromQL is run against a real Prometheus by cmd/vrift's
	// TestMonitoringMetrics.
}
