package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/fleet"
	"github.com/home-console/client-manager/internal/longlived"
)

// maxWait bounds how long a synchronous request waits for a result.
const maxWait = 5 * time.Minute

// duration accepts a Go duration string ("10s") or a number of seconds.
// Zero means the field's default; a non-zero duration must be at least
// minDuration, so that no value silently becomes the default.
type duration time.Duration

// maxDurationSeconds is the largest number of seconds a time.Duration holds.
const maxDurationSeconds = float64(math.MaxInt64 / int64(time.Second))

// minDuration is the smallest non-zero duration a body may give: the
// resolution of the agent protocol (timeout_ms).
const minDuration = time.Millisecond

// UnmarshalJSON implements json.Unmarshaler.
func (d *duration) UnmarshalJSON(b []byte) error {
	var v time.Duration
	var nonzero bool
	var secs float64
	given := string(b)
	if err := json.Unmarshal(b, &secs); err == nil || len(b) > 0 && (b[0] == '-' || '0' <= b[0] && b[0] <= '9') {
		if err != nil || math.Abs(secs) > maxDurationSeconds {
			return fmt.Errorf("duration %.40s seconds is out of range (at most %.0f)", b, maxDurationSeconds)
		}
		v, nonzero, given = time.Duration(math.Round(secs*float64(time.Second))), secs != 0, given+" seconds"
	} else {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return errors.New(`duration must be a string like "10s" or a number of seconds`)
		}
		if v, err = time.ParseDuration(s); err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		nonzero = strings.ContainsAny(s, "123456789")
	}
	if nonzero && v.Abs() < minDuration {
		return fmt.Errorf("duration %s is below %s, the smallest non-zero duration (0 means the default)", given, minDuration)
	}
	*d = duration(v)
	return nil
}

// commandBody is the body of POST /api/commands/{client_id}[/async].
type commandBody struct {
	Command        string   `json:"command"`
	Args           []string `json:"args"`
	Timeout        duration `json:"timeout"`
	QueueIfOffline bool     `json:"queue_if_offline"`
	TTL            duration `json:"ttl"`
}

// commandView is a command as the API shows it.
type commandView struct {
	fleet.Command
	Timeout string `json:"timeout"`
}

func viewCommand(cmd fleet.Command) commandView {
	if cmd.Args == nil {
		cmd.Args = []string{}
	}
	return commandView{Command: cmd, Timeout: cmd.Timeout.String()}
}

func (b commandBody) request(agentID string, p access.Principal) fleet.CommandRequest {
	return fleet.CommandRequest{
		AgentID:        agentID,
		Command:        b.Command,
		Args:           b.Args,
		Timeout:        time.Duration(b.Timeout),
		QueueIfOffline: b.QueueIfOffline,
		TTL:            time.Duration(b.TTL),
		RequestedBy:    p.Name,
	}
}

// allowed records the command's argv in the request's audit entry, then
// checks the caller's role may run it (s.Policy), or answers 403
// command_not_allowed and returns false.
func (s *Server) allowed(c *gin.Context, body commandBody) bool {
	c.Set(auditDetailKey, argvDetail(body.Command, body.Args))
	p, _ := access.From(c)
	if !s.Policy.Allows(p.Role, body.Command) {
		s.failf(c, codeCommandNotAllowed, "the %s role may not run %q; see CLIENT_MANAGER_OPERATOR_COMMANDS", p.Role, body.Command)
		return false
	}
	return true
}

// submit decodes the body and submits the command; it writes the error
// response and returns false on failure.
func (s *Server) submit(c *gin.Context) (fleet.Command, bool) {
	var body commandBody
	if !s.decodeJSON(c, &body) || !s.allowed(c, body) {
		return fleet.Command{}, false
	}
	p, _ := access.From(c)
	id := c.Param("id")
	cmd, err := s.Commands.Submit(c.Request.Context(), body.request(id, p))
	if err != nil {
		s.fail(c, commandError(id, err))
		return fleet.Command{}, false
	}
	return cmd, true
}

// commandMessages phrase Commands.Submit's errors about an agent.
var commandMessages = map[fleet.ErrorCode]string{
	fleet.CodeUnknownAgent: "no agent has id %q",
	fleet.CodeAgentRevoked: "agent %q is revoked",
	fleet.CodeAgentOffline: `agent %q is offline; set "queue_if_offline": true to queue the command until it connects`,
}

// commandError phrases an error of Commands.Submit for the command to
// agentID; other errors are returned as they are.
func commandError(agentID string, err error) error {
	code := fleet.CodeOf(err)
	if format, ok := commandMessages[code]; ok {
		return fleet.Errorf(code, format, agentID)
	}
	return err
}

// maxArgvDetail bounds the argv an audit entry records.
const maxArgvDetail = 512

// argvDetail renders argv for the audit log, bounded in size.
func argvDetail(command string, args []string) string {
	d := strconv.Quote(command)
	for _, a := range args {
		d += " " + strconv.Quote(a)
		if len(d) > maxArgvDetail {
			return d[:maxArgvDetail] + "…"
		}
	}
	return d
}

// runCommand answers POST /api/commands/:client_id: it waits for the result
// up to ?wait= (default: the command's timeout plus 2s, at most 5m) and
// answers 200 with the finished command, or 202 if it is still live.
func (s *Server) runCommand(c *gin.Context) {
	wait, ok := s.wait(c)
	if !ok {
		return
	}
	cmd, ok := s.submit(c)
	if !ok {
		return
	}
	if wait == 0 {
		wait = min(cmd.Timeout+2*time.Second, maxWait)
	}
	_ = longlived.Extend(c.Writer, c.Request, wait) // the answer may come after the server's write timeout
	ctx, cancel := context.WithTimeout(c.Request.Context(), wait)
	defer cancel()
	got, err := s.Commands.Wait(ctx, cmd.ID)
	if err != nil {
		s.storeError(c, "command", err)
		return
	}
	status := http.StatusOK
	if !got.Status.Terminal() {
		status = http.StatusAccepted
	}
	c.JSON(status, viewCommand(got))
}

// runCommandAsync answers POST /api/commands/:client_id/async with 202.
func (s *Server) runCommandAsync(c *gin.Context) {
	if cmd, ok := s.submit(c); ok {
		c.JSON(http.StatusAccepted, viewCommand(cmd))
	}
}

// wait reads the optional "wait" query parameter: a duration ("30s") or
// a number of seconds, from 1s to maxWait. It writes the error response
// and returns false when it is invalid.
func (s *Server) wait(c *gin.Context) (time.Duration, bool) {
	v := c.Query("wait")
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		if secs, aerr := strconv.Atoi(v); aerr == nil {
			d, err = time.Duration(secs)*time.Second, nil
		}
	}
	if err != nil || d < time.Second || d > maxWait {
		s.failf(c, codeInvalidQuery, "wait must be a duration from 1s to %s", maxWait)
		return 0, false
	}
	return d, true
}

// getCommand answers GET /api/commands/:id.
func (s *Server) getCommand(c *gin.Context) {
	cmd, err := s.Store.Command(c.Request.Context(), c.Param("id"))
	if err != nil {
		s.storeError(c, "command", err)
		return
	}
	c.JSON(http.StatusOK, viewCommand(cmd))
}

// cancelCommand answers POST /api/commands/:id/cancel: 200 with the
// cancelled command, or 202 while the agent is still stopping it.
func (s *Server) cancelCommand(c *gin.Context) {
	p, _ := access.From(c)
	cmd, err := s.Commands.Cancel(c.Request.Context(), c.Param("id"), p.Name)
	if err != nil {
		s.storeError(c, "command", err)
		return
	}
	status := http.StatusOK
	if !cmd.Status.Terminal() {
		status = http.StatusAccepted
	}
	c.JSON(status, viewCommand(cmd))
}

// listCommands answers GET /api/commands (history).
func (s *Server) listCommands(c *gin.Context) {
	limit, offset, ok := s.page(c)
	if !ok {
		return
	}
	f := fleet.CommandFilter{
		AgentID:     c.Query("client_id"),
		BatchID:     c.Query("batch_id"),
		RequestedBy: c.Query("requested_by"),
		Limit:       limit,
		Offset:      offset,
	}
	if f.Status, ok = s.commandStatuses(c); !ok {
		return
	}
	if f.Since, ok = s.since(c); !ok {
		return
	}
	cmds, total, err := s.Store.ListCommands(c.Request.Context(), f)
	if err != nil {
		s.storeError(c, "commands", err)
		return
	}
	items := make([]commandView, 0, len(cmds))
	for _, cmd := range cmds {
		items = append(items, viewCommand(cmd))
	}
	c.JSON(http.StatusOK, listPage[commandView]{Items: items, Total: total, Limit: limit, Offset: offset})
}
