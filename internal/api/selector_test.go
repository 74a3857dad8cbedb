package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// selectorOf returns n labels s00=v00, s01=v01, ...
func selectorOf(n int) map[string]string {
	labels := make(map[string]string, n)
	for i := range n {
		labels[fmt.Sprintf("s%02d", i)] = fmt.Sprintf("v%02d", i)
	}
	return labels
}

// TestSelectorBounds: a label selector of 64 entries selects its agents,
// in GET /api/clients and in a batch; one of 65 entries is refused with
// 400 selector_too_large on both.
func TestSelectorBounds(t *testing.T) {
	f := newFixture(t)
	labels := selectorOf(64)
	labels["fleet"] = "s"
	want := f.addAgents(t, 2, labels)
	f.addAgents(t, 1, map[string]string{"fleet": "o", "s00": "v00"})
	for _, n := range []int{64, 65} {
		q := url.Values{}
		for k, v := range selectorOf(n) {
			q.Add("label", k+"="+v)
		}
		var list struct{ Total int }
		status, code := f.call(t, "GET", "/api/clients?"+q.Encode(), "", &list)
		body, err := json.Marshal(map[string]any{"labels": selectorOf(n), "command": "uname", "queue_if_offline": true})
		if err != nil {
			t.Fatal(err)
		}
		var batch batchAnswer
		bstatus, bcode := f.call(t, "POST", "/api/commands", string(body), &batch)
		switch n {
		case 64:
			if status != http.StatusOK || list.Total != len(want) {
				t.Errorf("GET /api/clients with %d labels = %d %s, %d agents; want 200 and %d", n, status, code, list.Total, len(want))
			}
			if bstatus != http.StatusAccepted || batch.Total != len(want) {
				t.Errorf("batch with %d labels = %d %s, %d items; want 202 and %d", n, bstatus, bcode, batch.Total, len(want))
			}
		default:
			if status != http.StatusBadRequest || code != "selector_too_large" {
				t.Errorf("GET /api/clients with %d labels = %d %s; want 400 selector_too_large", n, status, code)
			}
			if bstatus != http.StatusBadRequest || bcode != "selector_too_large" {
				t.Errorf("batch with %d labels = %d %s; want 400 selector_too_large", n, bstatus, bcode)
			}
		}
	}
}
