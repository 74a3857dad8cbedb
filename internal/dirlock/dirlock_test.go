package dirlock

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestSecondAcquireIsRefused(t *testing.T) {
	dir := t.TempDir()
	first, err := AcquireDir(dir, "lock")
	if err != nil {
		t.Fatal(err)
	}
	_, err = AcquireDir(dir, "lock")
	var held *HeldError
	if !errors.As(err, &held) || !errors.Is(err, ErrHeld) {
		t.Fatalf("second Acquire: %v, want a HeldError", err)
	}
	if held.PID != os.Getpid() {
		t.Fatalf("holder pid %d, want %d", held.PID, os.Getpid())
	}
	if err := first.Release(); err != nil {
		t.Fatal(err)
	}
	if err := first.Release(); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	again, err := Acquire(filepath.Join(dir, "lock"))
	if err != nil {
		t.Fatalf("Acquire after Release: %v", err)
	}
	_ = again.Release()
}

func TestAcquireMissingDir(t *testing.T) {
	if _, err := Acquire(filepath.Join(t.TempDir(), "no", "lock")); err == nil || errors.Is(err, ErrHeld) {
		t.Fatalf("Acquire in a missing dir: %v", err)
	}
}
