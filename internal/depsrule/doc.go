// Package depsrule holds the test that enforces the dependency rule of
// docs/architecture.md: every package of the module is in one layer
// (domain, shared, adapter or assembly), an adapter never depends on
// another adapter, and the infrastructure libraries stay inside the
// adapter that owns them. It has no code of its own.
package depsrule
