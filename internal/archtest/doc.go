// Package archtest holds the tests that enforce the code's shape as
// docs/architecture.md states it: the dependency rule (every package is in
// one layer, an adapter never depends on another adapter, infrastructure
// libraries stay in the adapter that owns them; deps_test.go) and the log
// vocabulary (agent_id for an agent, err for an error; logkeys_test.go).
// It has no code of its own.
package archtest
