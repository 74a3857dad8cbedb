package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/events"
	"github.com/home-console/client-manager/internal/fleet"
)

func scrape(r *Registry) string {
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func TestScrapeShowsCountersAndGauges(t *testing.T) {
	r := New()
	r.Gauge("cm_agents_connected", "Connected agents.", func() float64 { return 7 })
	r.Add("cm_http_requests_total", "HTTP requests.", 2, "code", "200")
	r.Add("cm_http_requests_total", "HTTP requests.", 1, "code", "404")
	body := scrape(r)
	for _, w := range []string{
		"# TYPE cm_agents_connected gauge\ncm_agents_connected 7\n",
		"# TYPE cm_http_requests_total counter\n",
		`cm_http_requests_total{code="200"} 2`,
		`cm_http_requests_total{code="404"} 1`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("scrape lacks %q:\n%s", w, body)
		}
	}
}

// TestCounterFuncReadsAtScrapeTime: counters read from callbacks share one
// HELP/TYPE with the Add ones of the same name and show their value now.
func TestCounterFuncReadsAtScrapeTime(t *testing.T) {
	r := New()
	var shed float64
	r.CounterFunc("cm_connections_shed_total", "Shed connections.", func() float64 { return shed }, "reason", "limit")
	r.CounterFunc("cm_connections_shed_total", "Shed connections.", func() float64 { return 1 }, "reason", "no_descriptors")
	r.Add("cm_connections_shed_total", "Shed connections.", 4, "reason", "other")
	shed = 3
	body := scrape(r)
	if n := strings.Count(body, "# TYPE cm_connections_shed_total counter\n"); n != 1 {
		t.Errorf("%d TYPE lines:\n%s", n, body)
	}
	for _, w := range []string{
		`cm_connections_shed_total{reason="limit"} 3`,
		`cm_connections_shed_total{reason="no_descriptors"} 1`,
		`cm_connections_shed_total{reason="other"} 4`,
	} {
		if !strings.Contains(body, w) {
			t.Errorf("scrape lacks %q:\n%s", w, body)
		}
	}
	shed = 5
	if body := scrape(r); !strings.Contains(body, `cm_connections_shed_total{reason="limit"} 5`) {
		t.Errorf("the callback was not read again:\n%s", body)
	}
}

// TestFollowCountsEventsAndFinishedStatuses feeds typed events through a
// bus: every event counts by type, and every command.finished by the
// status it carries.
func TestFollowCountsEventsAndFinishedStatuses(t *testing.T) {
	r := New()
	bus := events.New()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Follow(ctx, bus); close(done) }()
	defer func() { cancel(); <-done }()

	// Follow subscribes in its goroutine: publish a probe until it counts.
	probes := 0
	for !strings.Contains(scrape(r), `cm_events_total{type="client.connected"}`) {
		if probes++; probes > 500 {
			t.Fatal("Follow never counted an event")
		}
		bus.Publish(events.AgentConnected{AgentID: "a"})
		time.Sleep(10 * time.Millisecond)
	}
	for _, st := range []fleet.CommandStatus{fleet.StatusCompleted, fleet.StatusCompleted, fleet.StatusFailed, fleet.StatusTimedOut} {
		bus.Publish(events.CommandFinished{AgentID: "a", CommandID: "c", Status: st})
	}
	bus.Publish(events.CommandOutput{AgentID: "a", CommandID: "c", Data: "x"})
	want := []string{
		`cm_commands_finished_total{status="completed"} 2`,
		`cm_commands_finished_total{status="failed"} 1`,
		`cm_commands_finished_total{status="timed_out"} 1`,
		`cm_events_total{type="command.finished"} 4`,
		`cm_events_total{type="command.output"} 1`,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		body, missing := scrape(r), ""
		for _, w := range want {
			if !strings.Contains(body, w+"\n") {
				missing = w
				break
			}
		}
		if missing == "" {
			if strings.Contains(body, `status="unknown"`) {
				t.Fatalf("a finished status was not read:\n%s", body)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("scrape lacks %q:\n%s", missing, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
