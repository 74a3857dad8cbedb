package metrics

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/events"
)

func TestScrapeShowsCountersAndGauges(t *testing.T) {
	r := New()
	r.Gauge("cm_agents_connected", "Connected agents.", func() float64 { return 7 })
	r.Add("cm_http_requests_total", "HTTP requests.", 2, "code", "200")
	r.Add("cm_http_requests_total", "HTTP requests.", 1, "code", "404")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bus := events.New()
	done := make(chan struct{})
	go func() { r.Follow(ctx, bus); close(done) }()
	want := []string{
		`cm_agents_connected 7`,
		`cm_http_requests_total{code="200"} 2`,
		`cm_http_requests_total{code="404"} 1`,
		`cm_commands_finished_total{status="completed"} 1`,
		`cm_events_total{type="command.finished"} 1`,
		`# TYPE cm_agents_connected gauge`,
	}
	deadline := time.Now().Add(5 * time.Second)
	var body string
	for time.Now().Before(deadline) {
		bus.Publish(events.Event{Type: events.CommandFinished, Data: map[string]string{"status": "completed", "error": ""}})
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body = rec.Body.String()
		if strings.Contains(body, "cm_commands_finished_total") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, w := range want[:3] {
		if !strings.Contains(body, w) {
			t.Errorf("scrape lacks %q:\n%s", w, body)
		}
	}
	if !strings.Contains(body, want[5]) || !strings.Contains(body, `cm_commands_finished_total{status="completed"}`) {
		t.Errorf("scrape lacks type line or finished counter:\n%s", body)
	}
	cancel()
	<-done
}
