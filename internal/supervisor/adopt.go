package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"

	"github.com/home-console/client-manager/pkg/pluginproto"
)

// reattachTimeout bounds connecting to a recorded process and describing
// it.
const reattachTimeout = 5 * time.Second

var (
	// errProcessGone means the recorded process no longer runs.
	errProcessGone = errors.New("recorded process is gone")
	// errNotOurs means the recorded pid now names a process this runtime
	// must not touch.
	errNotOurs = errors.New("recorded pid is not the plugin's process")
)

// adopt re-attaches to the plugin process an earlier runtime recorded, if
// any, and returns it connected and described. It returns nil when there
// is nothing to adopt; the record is then removed. A recorded process that
// is verified to be ours but cannot be adopted is stopped first (its
// process group gets SIGTERM, then SIGKILL), one that is gone or not ours
// is left alone.
func (s *Supervisor) adopt(ctx context.Context) *instance {
	rec, err := s.store.load(s.name)
	if err != nil {
		s.log.Warn("ignoring a defective re-attach record", "err", err)
		s.removeRecord()
		return nil
	}
	if rec == nil {
		return nil
	}
	inst, err := s.reattach(ctx, rec)
	if err != nil {
		s.log.Warn("not re-attaching: launching a new process", "recorded_pid", rec.PID, "reason", err)
		s.removeRecord()
		return nil
	}
	s.log.Info("re-attached to plugin process", "pid", inst.pid, "instance_id", inst.desc.InstanceID)
	return inst
}

// reattach verifies the recorded process and connects to it.
func (s *Supervisor) reattach(ctx context.Context, rec *record) (*instance, error) {
	o := &orphan{pid: rec.PID, startTime: rec.StartTime}
	if err := verifyOrphan(rec); err != nil {
		if errors.Is(err, errProcessGone) {
			// Whatever is left of its process group is ours.
			_ = o.signal(syscall.SIGKILL)
		}
		return nil, err
	}
	if why := s.staleness(rec); why != "" {
		s.replaceOrphan(ctx, o, why)
		return nil, errors.New(why)
	}
	rctx, cancel := context.WithTimeout(ctx, reattachTimeout)
	defer cancel()
	inst, err := s.connectOrphan(rctx, rec, o)
	if err != nil {
		s.replaceOrphan(ctx, o, err.Error())
		if inst != nil {
			inst.client.Kill() // the process is gone: this only ends go-plugin's goroutines
		}
		return nil, err
	}
	return inst, nil
}

// verifyOrphan checks that the recorded pid still names the process that
// was recorded and that it leads its own process group, so that signalling
// the group reaches nothing else. It returns an error wrapping
// errProcessGone or errNotOurs, or nil.
func verifyOrphan(rec *record) error {
	p, err := readProc(rec.PID)
	switch {
	case errors.Is(err, errNoProcess):
		return fmt.Errorf("%w: pid %d does not exist", errProcessGone, rec.PID)
	case err != nil:
		return fmt.Errorf("%w: %w", errNotOurs, err)
	case rec.StartTime == 0 || p.StartTime != rec.StartTime:
		return fmt.Errorf("%w: pid %d belongs to a process started at another time", errNotOurs, rec.PID)
	case p.exited():
		return fmt.Errorf("%w: pid %d has exited", errProcessGone, rec.PID)
	}
	exe, err := procExe(rec.PID)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errNotOurs, err)
	case exe != rec.Binary:
		return fmt.Errorf("%w: pid %d runs %s, not %s", errNotOurs, rec.PID, exe, rec.Binary)
	case p.PGID != rec.PID:
		return fmt.Errorf("%w: pid %d does not lead its process group", errNotOurs, rec.PID)
	}
	return nil
}

// staleness says why a verified process must be replaced rather than
// adopted ("" if it need not be): it was launched from another manifest or
// executable, speaks another protocol version, or was being stopped.
func (s *Supervisor) staleness(rec *record) string {
	switch {
	case rec.Stopping:
		return "a stop of the process had begun"
	case rec.ProtocolVersion != pluginproto.ProtocolVersion:
		return fmt.Sprintf("the process speaks plugin protocol version %d", rec.ProtocolVersion)
	case rec.Launch != s.launchDigest():
		return "the manifest changed since the process was launched"
	}
	// Is the process running the file the manifest's command names now?
	// A running executable cannot be rewritten in place (ETXTBSY): a new
	// build or install is a new file, or a symlink to one. The
	// modification time is no sign: go build touches an unchanged binary.
	fi, err := os.Stat(s.man.Command)
	running, err2 := os.Stat("/proc/" + strconv.Itoa(rec.PID) + "/exe")
	if err != nil || err2 != nil || !os.SameFile(fi, running) || fi.Size() != rec.BinarySize {
		return "the executable changed since the process was launched"
	}
	return ""
}

// replaceOrphan stops a verified process that cannot be adopted: SIGTERM
// to its process group (pluginproto.Serve drains on it), SIGKILL after the
// stop timeout, and waits until it has exited.
func (s *Supervisor) replaceOrphan(ctx context.Context, o *orphan, why string) {
	s.log.Warn("stopping the recorded plugin process to replace it", "pid", o.pid, "reason", why)
	if err := o.signal(syscall.SIGTERM); err != nil {
		s.log.Warn("SIGTERM failed", "err", err)
	}
	wctx, cancel := context.WithTimeout(ctx, s.man.StopTimeout)
	defer cancel()
	if o.Wait(wctx) == nil {
		_ = o.signal(syscall.SIGKILL) // its group's leftovers
		return
	}
	s.log.Warn("recorded plugin process still running: SIGKILL to its process group", "pid", o.pid)
	if err := o.signal(syscall.SIGKILL); err != nil {
		s.log.Warn("SIGKILL failed", "err", err)
	}
	kctx, cancel2 := context.WithTimeout(context.Background(), s.opts.KillGrace)
	defer cancel2()
	_ = o.Wait(kctx)
}

// connectOrphan re-attaches go-plugin to the recorded process, describes
// it and checks its instance id. The returned instance, if any, must be
// killed on error.
func (s *Supervisor) connectOrphan(ctx context.Context, rec *record, o *orphan) (*instance, error) {
	addr, err := recordAddr(rec)
	if err != nil {
		return nil, err
	}
	rc := &plugin.ReattachConfig{
		Protocol:        plugin.Protocol(rec.Protocol),
		ProtocolVersion: rec.ProtocolVersion,
		Addr:            addr,
		Pid:             rec.PID,
		ReattachFunc:    func() (runner.AttachedRunner, error) { return o, nil },
	}
	cfg := pluginproto.NewReattachConfig(rc, newHCLogger(s.log), newLineLogger(s.log, "stdio"))
	inst := &instance{
		client: plugin.NewClient(cfg),
		pid:    rec.PID,
		orphan: o,
		rec:    rec,
		kill:   func() { _ = o.signal(syscall.SIGKILL) },
	}
	if _, err := inst.client.Start(); err != nil {
		return inst, fmt.Errorf("re-attach: %w", err)
	}
	if err := s.connect(ctx, inst); err != nil {
		return inst, fmt.Errorf("re-attach: %w", err)
	}
	if inst.desc.InstanceID != rec.InstanceID {
		return inst, fmt.Errorf("re-attach: the process describes instance %q, recorded %q", inst.desc.InstanceID, rec.InstanceID)
	}
	return inst, nil
}

// recordAddr returns the recorded gRPC address.
func recordAddr(rec *record) (net.Addr, error) {
	switch rec.Network {
	case "unix":
		return &net.UnixAddr{Net: "unix", Name: rec.Address}, nil
	case "tcp":
		a, err := net.ResolveTCPAddr("tcp", rec.Address)
		if err != nil {
			return nil, fmt.Errorf("re-attach: address %q: %w", rec.Address, err)
		}
		return a, nil
	}
	return nil, fmt.Errorf("re-attach: unsupported network %q", rec.Network)
}

// launchDigest digests the manifest fields a process is launched with.
func (s *Supervisor) launchDigest() string {
	h := sha256.New()
	_ = json.NewEncoder(h).Encode(struct {
		Command string
		Args    []string
		Env     map[string]string
		Mount   string
	}{s.man.Command, s.man.Args, s.man.Env, s.man.Mount})
	return hex.EncodeToString(h.Sum(nil))
}

// removeRecord removes the plugin's re-attach record.
func (s *Supervisor) removeRecord() {
	if err := s.store.remove(s.name); err != nil {
		s.log.Warn("removing the re-attach record", "err", err)
	}
}

// saveRecord persists inst's record after applying f to it.
func (s *Supervisor) saveRecord(inst *instance, f func(*record)) {
	if inst.rec == nil {
		return
	}
	f(inst.rec)
	if err := s.store.save(inst.rec); err != nil {
		s.log.Warn("saving the re-attach record; a runtime restart will not re-attach to this process", "err", err)
	}
}
