package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/hub"
	"github.com/home-console/client-manager/internal/hub/hubtest"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// noTouch is a store that cannot record connections, as on a full disk.
type noTouch struct{ fleet.Store }

func (noTouch) TouchAgent(context.Context, string, fleet.AgentFacts, string, time.Time) error {
	return fmt.Errorf("sqlite: touch agent: %w", &fleet.Error{
		Code: fleet.CodeStorageUnavailable, Message: "storage unavailable: the disk holding the store is full (SQLITE_FULL)"})
}

// TestHelloOnAFullDisk: a hello the store cannot record closes the
// connection with 1013 (try again later), not 1011.
func TestHelloOnAFullDisk(t *testing.T) {
	env := hubtest.StartWith(t, hub.Config{}, func(s fleet.Store) fleet.Store { return noTouch{s} })
	_, cred := env.NewAgent(t, "a")
	a, _, err := env.Dial(ctxT(t, 5*time.Second), cred)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Send(ctxT(t, 5*time.Second), agentproto.TypeHello, "", agentproto.Hello{}); err != nil {
		t.Fatal(err)
	}
	if code, reason := a.CloseStatus(ctxT(t, 5*time.Second)); code != agentproto.CloseTryAgainLater {
		t.Fatalf("close %d %q, want %d", code, reason, agentproto.CloseTryAgainLater)
	}
}
