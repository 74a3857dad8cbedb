package supervisor

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-plugin"
	"golang.org/x/sys/unix"

	"github.com/home-console/client-manager/internal/pluginstate"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// instance is one plugin process under supervision.
type instance struct {
	client *plugin.Client
	// cmd is the launched command; its ProcessState may only be read once
	// client.Kill has returned. It is nil for an adopted process.
	cmd *exec.Cmd
	// orphan is set for a process adopted from an earlier runtime.
	orphan *orphan
	pid    int
	plugin pluginproto.Plugin
	desc   pluginproto.Description
	addr   string
	// rec is the process's re-attach record.
	rec *record
	// kill sends SIGKILL to the process group unless the process has
	// already been reaped.
	kill context.CancelFunc
	// reaped and exit are set by reap.
	reaped bool
	exit   *pluginstate.Exit
}

// signal sends sig to the instance's process group.
func (inst *instance) signal(sig syscall.Signal) error {
	if inst.orphan != nil {
		return inst.orphan.signal(sig)
	}
	return signalGroup(inst.pid, sig)
}

// launch verifies the binary and starts the plugin process in its own
// process group, returning once go-plugin's handshake has completed. The
// process keeps the runtime's working directory, so relative paths in its
// configuration mean what they would for a process started by hand.
func (s *Supervisor) launch(ctx context.Context) (*instance, error) {
	if err := verifyChecksum(s.man.Command, s.man.SHA256); err != nil {
		return nil, err
	}
	procCtx, kill := context.WithCancel(context.Background())
	cmd := exec.CommandContext(procCtx, s.man.Command, s.man.Args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return signalGroup(cmd.Process.Pid, syscall.SIGKILL) }
	cmd.Env = s.environ()

	cfg := pluginproto.NewClientConfig(cmd, newHCLogger(s.log), newLineLogger(s.log, "stdio"))
	cfg.Stderr = newLineLogger(s.log, "stderr")
	cfg.SkipHostEnv = true // cmd.Env already holds it, with the manifest's env winning
	// The launch's own deadline (start_timeout) ends the handshake first,
	// with a clearer message than go-plugin's.
	cfg.StartTimeout = s.startTimeout() + time.Second
	inst := &instance{client: plugin.NewClient(cfg), cmd: cmd, kill: kill}

	stop := context.AfterFunc(ctx, kill)
	defer stop()
	if _, err := inst.client.Start(); err != nil {
		exit := s.reap(inst)
		switch {
		case ctx.Err() != nil:
			return inst, fmt.Errorf("launch %s: %w", s.man.Command, context.Cause(ctx))
		case exit != nil:
			// go-plugin's message is long and generic; its first line and the
			// exit status say what happened.
			first, _, _ := strings.Cut(err.Error(), "\n")
			return inst, fmt.Errorf("launch %s: process %s before the plugin handshake completed (%s)",
				s.man.Command, exit, strings.TrimSpace(first))
		}
		return inst, fmt.Errorf("launch %s: %w", s.man.Command, err)
	}
	inst.pid = inst.client.ReattachConfig().Pid
	inst.rec = s.newRecord(inst)
	return inst, nil
}

// newRecord returns the re-attach record of a launched process.
func (s *Supervisor) newRecord(inst *instance) *record {
	rc := inst.client.ReattachConfig()
	rec := &record{
		Plugin:          s.name,
		PID:             inst.pid,
		Binary:          s.man.Command, // replaced by the path with symlinks resolved
		Launch:          s.launchDigest(),
		Protocol:        string(rc.Protocol),
		ProtocolVersion: pluginproto.ProtocolVersion,
		Network:         rc.Addr.Network(),
		Address:         rc.Addr.String(),
	}
	if p, err := readProc(inst.pid); err == nil {
		rec.StartTime = p.StartTime
	}
	if exe, err := procExe(inst.pid); err == nil {
		rec.Binary = exe
	}
	// The file the process runs, even if replaced since.
	if fi, err := os.Stat("/proc/" + strconv.Itoa(inst.pid) + "/exe"); err == nil {
		rec.BinarySize, rec.BinaryModTime = fi.Size(), fi.ModTime()
	}
	if s.man.Mount != "" {
		rec.ProxyToken = rand.Text()
	}
	return rec
}

// runtimeSecrets are environment variables of the runtime that a plugin
// must never see.
var runtimeSecrets = []string{"RUNTIME_ADMIN_TOKEN"}

// environ is the runtime's environment, less its secrets, plus the
// manifest's env.
func (s *Supervisor) environ() []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(runtimeSecrets, k)
	})
	for _, k := range slices.Sorted(maps.Keys(s.man.Env)) {
		env = append(env, k+"="+s.man.Env[k])
	}
	return env
}

// connect dispenses the plugin from a connected client and describes it.
func (s *Supervisor) connect(ctx context.Context, inst *instance) error {
	p, err := pluginproto.Dispense(inst.client)
	if err != nil {
		return err
	}
	inst.plugin = p
	if inst.desc, err = p.Describe(ctx); err != nil {
		return err
	}
	if inst.desc.Name != s.man.Name {
		s.log.Warn("plugin describes itself under another name", "described_name", inst.desc.Name)
	}
	return nil
}

// begin calls Start and waits until the plugin is ready: Health says so
// and its HTTP address accepts TCP connections.
func (s *Supervisor) begin(ctx context.Context, inst *instance) error {
	addr, err := inst.plugin.Start(ctx, s.startConfig(inst))
	if err != nil {
		return err
	}
	inst.addr = addr
	s.update(func(sn *pluginstate.Snapshot) { sn.HTTPAddress = addr })
	s.saveRecord(inst, func(r *record) { r.HTTPAddress = addr })
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := s.readiness(ctx, inst)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready within %s: %w", s.startTimeout(), err)
		case <-tick.C:
		}
	}
}

// startConfig is the configuration Start gets: the mount and the proxy
// token in one-port mode.
func (s *Supervisor) startConfig(inst *instance) map[string]string {
	if s.man.Mount == "" {
		return nil
	}
	return map[string]string{
		pluginproto.ConfigMount:      s.man.Mount,
		pluginproto.ConfigProxyToken: inst.rec.ProxyToken,
	}
}

// readiness returns nil if the plugin is ready to serve, else why not.
func (s *Supervisor) readiness(ctx context.Context, inst *instance) error {
	h, err := inst.plugin.Health(ctx)
	if err != nil {
		return err
	}
	s.update(func(sn *pluginstate.Snapshot) { sn.Health = healthOf(h, "") })
	if !h.Ready {
		return fmt.Errorf("health not ready (status %q)", h.Status)
	}
	if inst.addr == "" {
		return nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", dialable(inst.addr))
	if err != nil {
		return fmt.Errorf("http address %s: %w", inst.addr, err)
	}
	return conn.Close()
}

// reap waits until go-plugin has reaped the process (or, for an adopted
// one, seen it exit), kills whatever is left of its process group, removes
// its re-attach record and returns how the process ended (nil if it never
// started). Later calls return the same.
func (s *Supervisor) reap(inst *instance) *pluginstate.Exit {
	if inst.reaped {
		return inst.exit
	}
	inst.reaped = true
	inst.client.Kill()
	inst.kill()
	if inst.orphan != nil {
		s.removeRecord()
		// Not our child: its exit status is not ours to know.
		inst.exit = &pluginstate.Exit{Code: -1, Unknown: true, Time: time.Now().UTC()}
		return inst.exit
	}
	if inst.cmd.Process == nil {
		return nil
	}
	if err := signalGroup(inst.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		s.log.Warn("cleaning up the process group", "err", err)
	}
	s.removeRecord()
	inst.exit = exitOf(inst.cmd.ProcessState)
	return inst.exit
}

// exitOf converts a process state to a [pluginstate.Exit].
func exitOf(ps *os.ProcessState) *pluginstate.Exit {
	if ps == nil {
		return nil
	}
	e := &pluginstate.Exit{Code: ps.ExitCode(), Time: time.Now().UTC()}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.SignalNumber = int(ws.Signal())
		e.Signal = unix.SignalName(ws.Signal())
	}
	return e
}

// signalGroup sends sig to the process group led by pid. A group that no
// longer exists is not an error.
func signalGroup(pid int, sig syscall.Signal) error {
	if pid <= 0 {
		return nil
	}
	if err := syscall.Kill(-pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s to process group %d: %w", unix.SignalName(sig), pid, err)
	}
	return nil
}

// verifyChecksum checks the SHA-256 of the file at path against want, a
// lower-case hex digest; an empty want checks nothing.
func verifyChecksum(path, want string) error {
	if want == "" {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fmt.Errorf("checksum: %w", err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return fmt.Errorf("checksum mismatch for %s: manifest sha256 %s, file has %s", path, want, got)
	}
	return nil
}

// dialable turns a listen address on all interfaces into one on loopback.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
