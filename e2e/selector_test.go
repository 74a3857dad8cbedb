package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// maxSelector is the largest label selector the API takes (docs/api.md).
const maxSelector = 64

// selectorLabels returns n labels l00=v00, l01=v01, ...
func selectorLabels(n int) map[string]string {
	labels := make(map[string]string, n)
	for i := range n {
		labels[fmt.Sprintf("l%02d", i)] = fmt.Sprintf("v%02d", i)
	}
	return labels
}

// labelQuery is GET /api/clients's query selecting n labels.
func labelQuery(n int) string {
	q := url.Values{}
	for k, v := range selectorLabels(n) {
		q.Add("label", k+"="+v)
	}
	return q.Encode()
}

// labelBatch is a batch body selecting n labels.
func labelBatch(n int) string {
	b, _ := json.Marshal(map[string]any{"labels": selectorLabels(n), "command": "uname", "queue_if_offline": true})
	return string(b)
}

// TestLargeSelectors: a selector of the largest allowed size selects the
// agents that have it, in GET /api/clients and in a batch; one entry more,
// or 1,000 (which used to answer 500 "Expression tree is too large"),
// answers 400 selector_too_large on both, and the service stays healthy.
func TestLargeSelectors(t *testing.T) {
	t.Parallel()
	port, dataDir := freePort(t), t.TempDir()
	startStandalone(t, port, dataDir)
	base := "http://127.0.0.1:" + itoa(port)
	raw, err := os.ReadFile(filepath.Join(dataDir, "bootstrap-token"))
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(raw))
	body, _ := json.Marshal(map[string]any{"token": token, "name": "labelled", "labels": selectorLabels(maxSelector)})
	var enrolled struct {
		AgentID string `json:"agent_id"`
	}
	if code := postJSON(t, base+"/api/enroll", string(body), &enrolled); code != http.StatusCreated {
		t.Fatalf("enroll = %d", code)
	}
	for _, n := range []int{maxSelector, maxSelector + 1, 1000} {
		began := time.Now()
		list := call(t, "GET", base+"/api/clients?"+labelQuery(n), "")
		batch := call(t, "POST", base+"/api/commands", labelBatch(n))
		t.Logf("%d entries: GET %d, batch %d, %dms", n, list.status, batch.status, time.Since(began).Milliseconds())
		if n > maxSelector {
			for route, a := range map[string]apiAnswer{"GET /api/clients": list, "POST /api/commands": batch} {
				if a.status != http.StatusBadRequest || a.code != "selector_too_large" || !strings.Contains(a.message, fmt.Sprint(maxSelector)) {
					t.Errorf("%s with %d labels = %d %s; want 400 selector_too_large naming the limit", route, n, a.status, a.body)
				}
			}
			continue
		}
		var got struct {
			Total int
			Items []struct {
				ID      string `json:"id"`
				AgentID string `json:"client_id"`
				Command *struct{ ID string }
			}
		}
		if list.status != http.StatusOK || json.Unmarshal(list.body, &got) != nil || got.Total != 1 || got.Items[0].ID != enrolled.AgentID {
			t.Errorf("GET /api/clients with %d labels = %d %s; want the enrolled agent", n, list.status, list.body)
		}
		if batch.status != http.StatusAccepted || json.Unmarshal(batch.body, &got) != nil || got.Total != 1 ||
			got.Items[0].AgentID != enrolled.AgentID || got.Items[0].Command == nil {
			t.Errorf("batch with %d labels = %d %s; want a command for the enrolled agent", n, batch.status, batch.body)
		}
	}
	if code, body := get(base + "/health/ready"); code != http.StatusOK {
		t.Fatalf("/health/ready = %d %s", code, body)
	}
}
