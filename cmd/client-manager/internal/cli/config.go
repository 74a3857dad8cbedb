package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/home-console/client-manager/internal/access"
	"github.com/home-console/client-manager/internal/cmservice"
	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/logging"
	"github.com/home-console/client-manager/internal/origin"
	"github.com/home-console/client-manager/pkg/pluginproto"
)

// Prefix starts the name of every environment variable of the client
// manager.
const Prefix = "CLIENT_MANAGER"

// formatAuto is the log format that means json under the runtime (which
// re-logs each record with its level, time and fields) and text otherwise.
const formatAuto = "auto"

// defaultDrainTimeout bounds a standalone drain on SIGTERM or SIGINT.
const defaultDrainTimeout = 10 * time.Second

// config is the client manager's environment. Its defaults are the
// packages' (see defaults); the README's table lists the same.
type config struct {
	Host         string        `envconfig:"HOST" desc:"HTTP/WebSocket listen address"`
	Port         int           `envconfig:"PORT" desc:"listen port; 0 picks a free one (reported to the runtime)"`
	DataDir      string        `envconfig:"DATA_DIR" desc:"the store, bootstrap-token and the lock; one client manager per directory"`
	LogLevel     string        `envconfig:"LOG_LEVEL" desc:"debug, info, warn or error"`
	LogFormat    string        `envconfig:"LOG_FORMAT" desc:"auto (json under the runtime, text otherwise), text or json; on stderr"`
	DrainTimeout time.Duration `envconfig:"DRAIN_TIMEOUT" desc:"standalone: how long SIGTERM/SIGINT lets in-flight work drain"`

	TLSCert          string   `envconfig:"TLS_CERT" desc:"PEM certificate (chain) file: serve HTTPS and wss:// (with TLS_KEY)"`
	TLSKey           string   `envconfig:"TLS_KEY" desc:"PEM key file of TLS_CERT"`
	AllowedOrigins   []string `envconfig:"ALLOWED_ORIGINS" desc:"browser origins allowed to call the API and open WebSockets"`
	OperatorCommands []string `envconfig:"OPERATOR_COMMANDS" desc:"executables the operator role may run"`
	MaxBodyBytes     int64    `envconfig:"MAX_BODY_BYTES" desc:"largest REST request body (413 beyond)"`
	APIRate          float64  `envconfig:"API_RATE" desc:"REST requests per second per caller (429 beyond)"`
	APIBurst         int      `envconfig:"API_BURST" desc:"burst of API_RATE"`

	ReadHeaderTimeout  time.Duration `envconfig:"READ_HEADER_TIMEOUT" desc:"time to send a request's header; a slower connection is closed"`
	ReadTimeout        time.Duration `envconfig:"READ_TIMEOUT" desc:"time to send a whole request (a REST body: from the end of its header; 408 beyond)"`
	WriteTimeout       time.Duration `envconfig:"WRITE_TIMEOUT" desc:"time to take a response (event streams, ?wait= and WebSockets set their own)"`
	IdleTimeout        time.Duration `envconfig:"IDLE_TIMEOUT" desc:"a kept-alive connection sending no new request is closed after this"`
	MaxOpenConnections int           `envconfig:"MAX_OPEN_CONNECTIONS" desc:"open connections of every kind (at most RLIMIT_NOFILE-128); beyond, the longest-waiting idle or half-sent one is closed"`
	EventQueue         int           `envconfig:"EVENT_QUEUE" desc:"events waiting for one /api/events consumer; beyond, its stream is dropped"`
	EventWriteTimeout  time.Duration `envconfig:"EVENT_WRITE_TIMEOUT" desc:"time for one write to an /api/events consumer; beyond, its stream is dropped"`

	MaxConnections    int           `envconfig:"MAX_CONNECTIONS" desc:"agent WebSockets (503 beyond)"`
	MaxMessageBytes   int64         `envconfig:"MAX_MESSAGE_BYTES" desc:"largest agent frame (close 1009 beyond)"`
	OutboundQueue     int           `envconfig:"OUTBOUND_QUEUE" desc:"messages queued per agent; a full queue drops the agent"`
	MessageRate       float64       `envconfig:"MESSAGE_RATE" desc:"inbound messages per second per agent (close 4005 beyond)"`
	ConnectRate       float64       `envconfig:"CONNECT_RATE" desc:"WebSocket upgrades per second for the whole server (429 beyond)"`
	ConnectBurst      int           `envconfig:"CONNECT_BURST" desc:"burst of CONNECT_RATE"`
	HelloTimeout      time.Duration `envconfig:"HELLO_TIMEOUT" desc:"time for a new connection to send hello"`
	HeartbeatInterval time.Duration `envconfig:"HEARTBEAT_INTERVAL" desc:"heartbeat period told to agents"`
	LivenessTimeout   time.Duration `envconfig:"LIVENESS_TIMEOUT" desc:"a silent agent is offline after this"`

	StreamWindowBytes int64   `envconfig:"STREAM_WINDOW_BYTES" desc:"credit window per agent stream and direction"`
	StreamChunkBytes  int     `envconfig:"STREAM_CHUNK_BYTES" desc:"largest payload of one binary stream frame"`
	StreamMessageRate float64 `envconfig:"STREAM_MESSAGE_RATE" desc:"inbound binary frames and stream messages per second per agent (close 4005 beyond)"`

	CommandTimeout time.Duration `envconfig:"COMMAND_TIMEOUT" desc:"default command timeout"`
	MaxOutputBytes int           `envconfig:"MAX_OUTPUT_BYTES" desc:"output kept per command; more is cut and flagged truncated"`
	Retention      time.Duration `envconfig:"RETENTION" desc:"how long finished commands are kept"`

	TerminalRole            string        `envconfig:"TERMINAL_ROLE" desc:"least role that may open terminals, watch sessions and read recordings"`
	FilesRole               string        `envconfig:"FILES_ROLE" desc:"least role that may upload, download, stat and list agents' files"`
	RecordInput             bool          `envconfig:"RECORD_INPUT" desc:"record terminal keystrokes too (they may hold passwords)"`
	RecordingRetention      time.Duration `envconfig:"RECORDING_RETENTION" desc:"how long an ended session's recording is kept"`
	RecordingMaxBytes       int64         `envconfig:"RECORDING_MAX_BYTES" desc:"largest recording of one session; beyond, recording stops (the session goes on)"`
	RecordingsMaxTotalBytes int64         `envconfig:"RECORDINGS_MAX_TOTAL_BYTES" desc:"all recordings together; beyond, the oldest ended ones are deleted"`
	FilesMaxBytes           int64         `envconfig:"FILES_MAX_BYTES" desc:"largest upload (413 before the agent is asked)"`
	FilesMaxPerAgent        int           `envconfig:"FILES_MAX_PER_AGENT" desc:"file transfers running at once per agent (429 beyond)"`
	TerminalTicketTTL       time.Duration `envconfig:"TERMINAL_TICKET_TTL" desc:"how long a single-use terminal ticket is valid"`

	EnrollRate    int           `envconfig:"ENROLL_RATE" desc:"enrollment attempts per minute per caller IP"`
	BootstrapUses int           `envconfig:"BOOTSTRAP_USES" desc:"agents the bootstrap token written on first start enrolls"`
	BootstrapTTL  time.Duration `envconfig:"BOOTSTRAP_TTL" desc:"how long that token is valid (negative: forever)"`
}

// defaults returns the environment's defaults, taken from the packages
// that apply them.
func defaults() config {
	d := cmservice.DefaultConfig()
	return config{
		Host: d.Host, Port: d.Port, DataDir: d.DataDir,
		LogLevel: logging.DefaultLevel, LogFormat: formatAuto, DrainTimeout: defaultDrainTimeout,
		OperatorCommands: access.DefaultOperatorCommands,
		MaxBodyBytes:     d.MaxBodyBytes, APIRate: d.APIRate, APIBurst: d.APIBurst,

		ReadHeaderTimeout: d.Timeouts.ReadHeader, ReadTimeout: d.Timeouts.Read,
		WriteTimeout: d.Timeouts.Write, IdleTimeout: d.Timeouts.Idle,
		MaxOpenConnections: d.MaxOpenConnections, EventQueue: d.EventQueue, EventWriteTimeout: d.EventWriteTimeout,

		MaxConnections: d.Hub.MaxConnections, MaxMessageBytes: d.Hub.MaxMessageBytes,
		OutboundQueue: d.Hub.OutboundQueue, MessageRate: d.Hub.MessageRate,
		ConnectRate: d.Hub.ConnectRate, ConnectBurst: d.Hub.ConnectBurst,
		HelloTimeout: d.Hub.HelloTimeout, HeartbeatInterval: d.Hub.HeartbeatInterval,
		LivenessTimeout:   d.Hub.LivenessTimeout,
		StreamWindowBytes: d.Hub.StreamWindowBytes, StreamChunkBytes: d.Hub.StreamChunkBytes,
		StreamMessageRate: d.Hub.StreamMessageRate,

		CommandTimeout: d.Dispatch.DefaultTimeout, MaxOutputBytes: d.Dispatch.MaxOutputBytes,
		Retention: d.Dispatch.Retention,

		TerminalRole: d.Sessions.TerminalRole.String(), FilesRole: d.Sessions.FilesRole.String(),
		RecordInput: d.Sessions.Config.RecordInput, RecordingRetention: d.Sessions.Config.RecordingRetention,
		RecordingMaxBytes: d.Sessions.Config.RecordingMaxBytes, RecordingsMaxTotalBytes: d.Sessions.Config.RecordingsMaxTotalBytes,
		FilesMaxBytes: d.Sessions.Config.FilesMaxBytes, FilesMaxPerAgent: d.Sessions.Config.FilesMaxPerAgent,
		TerminalTicketTTL: d.Sessions.Config.TicketTTL,

		EnrollRate: d.Enroll.AttemptsPerMinute, BootstrapUses: d.Enroll.BootstrapUses,
		BootstrapTTL: d.Enroll.BootstrapTTL,
	}
}

// validate checks what envconfig cannot.
func (c config) validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("CLIENT_MANAGER_TLS_CERT and CLIENT_MANAGER_TLS_KEY go together: " +
			"set both (PEM certificate and key files) to serve HTTPS and wss://, or neither for plain HTTP")
	case c.APIRate <= 0 || c.APIBurst < 1:
		return errors.New("CLIENT_MANAGER_API_RATE must be positive and CLIENT_MANAGER_API_BURST at least 1")
	case c.MaxOpenConnections < 1 || c.EventQueue < 1:
		return errors.New("CLIENT_MANAGER_MAX_OPEN_CONNECTIONS and CLIENT_MANAGER_EVENT_QUEUE must be at least 1")
	case c.EventWriteTimeout <= 0:
		return errors.New("CLIENT_MANAGER_EVENT_WRITE_TIMEOUT must be positive")
	}
	if err := c.validateSessions(); err != nil {
		return err
	}
	if err := c.timeouts().Validate(Prefix + "_"); err != nil {
		return err
	}
	if _, err := origin.New(c.AllowedOrigins); err != nil {
		return fmt.Errorf("CLIENT_MANAGER_ALLOWED_ORIGINS: %w", err)
	}
	return nil
}

// validateSessions checks the terminal and file settings.
func (c config) validateSessions() error {
	for name, v := range map[string]string{"TERMINAL_ROLE": c.TerminalRole, "FILES_ROLE": c.FilesRole} {
		if _, err := access.ParseRole(v); err != nil {
			return fmt.Errorf("%s_%s: %w", Prefix, name, err)
		}
	}
	switch {
	case c.RecordingRetention <= 0 || c.TerminalTicketTTL <= 0:
		return errors.New("CLIENT_MANAGER_RECORDING_RETENTION and CLIENT_MANAGER_TERMINAL_TICKET_TTL must be positive")
	case c.RecordingMaxBytes < 1024 || c.RecordingsMaxTotalBytes < c.RecordingMaxBytes:
		return errors.New("CLIENT_MANAGER_RECORDING_MAX_BYTES must be at least 1024 and CLIENT_MANAGER_RECORDINGS_MAX_TOTAL_BYTES at least that")
	case c.FilesMaxBytes < 1 || c.FilesMaxPerAgent < 1:
		return errors.New("CLIENT_MANAGER_FILES_MAX_BYTES and CLIENT_MANAGER_FILES_MAX_PER_AGENT must be at least 1")
	}
	return nil
}

// sessions returns the terminal and file settings (validated already).
func (c config) sessions() cmservice.Sessions {
	s := cmservice.DefaultSessions()
	s.TerminalRole, _ = access.ParseRole(c.TerminalRole)
	s.FilesRole, _ = access.ParseRole(c.FilesRole)
	s.Config.RecordInput, s.Config.RecordingRetention = c.RecordInput, c.RecordingRetention
	s.Config.RecordingMaxBytes, s.Config.RecordingsMaxTotalBytes = c.RecordingMaxBytes, c.RecordingsMaxTotalBytes
	s.Config.FilesMaxBytes, s.Config.FilesMaxPerAgent = c.FilesMaxBytes, c.FilesMaxPerAgent
	s.Config.TicketTTL = c.TerminalTicketTTL
	return s
}

// timeouts returns the HTTP server's timeouts.
func (c config) timeouts() connlimit.Timeouts {
	return connlimit.Timeouts{ReadHeader: c.ReadHeaderTimeout, Read: c.ReadTimeout, Write: c.WriteTimeout, Idle: c.IdleTimeout}
}

// logFormat resolves the auto format.
func (c config) logFormat() string {
	if !strings.EqualFold(c.LogFormat, formatAuto) {
		return c.LogFormat
	}
	if pluginproto.LaunchedByRuntime() {
		return "json"
	}
	return logging.DefaultFormat
}

// service returns the service configuration: the defaults with the
// environment's settings.
func (c config) service() cmservice.Config {
	s := cmservice.DefaultConfig()
	s.Host, s.Port, s.DataDir = c.Host, c.Port, c.DataDir
	s.MaxBodyBytes, s.APIRate, s.APIBurst = c.MaxBodyBytes, c.APIRate, c.APIBurst
	s.AllowedOrigins, s.TLSCert, s.TLSKey = c.AllowedOrigins, c.TLSCert, c.TLSKey
	s.OperatorCommands = c.OperatorCommands
	s.Timeouts, s.MaxOpenConnections = c.timeouts(), c.MaxOpenConnections
	s.EventQueue, s.EventWriteTimeout = c.EventQueue, c.EventWriteTimeout

	s.Hub.MaxConnections, s.Hub.MaxMessageBytes, s.Hub.OutboundQueue = c.MaxConnections, c.MaxMessageBytes, c.OutboundQueue
	s.Hub.MessageRate, s.Hub.ConnectRate, s.Hub.ConnectBurst = c.MessageRate, c.ConnectRate, c.ConnectBurst
	s.Hub.HelloTimeout, s.Hub.HeartbeatInterval, s.Hub.LivenessTimeout = c.HelloTimeout, c.HeartbeatInterval, c.LivenessTimeout
	s.Hub.StreamWindowBytes, s.Hub.StreamChunkBytes = c.StreamWindowBytes, c.StreamChunkBytes
	s.Hub.StreamMessageRate, s.Hub.StreamMessageBurst = c.StreamMessageRate, int(2*c.StreamMessageRate)

	s.Dispatch.DefaultTimeout, s.Dispatch.MaxOutputBytes, s.Dispatch.Retention = c.CommandTimeout, c.MaxOutputBytes, c.Retention

	s.Enroll.AttemptsPerMinute, s.Enroll.BootstrapUses, s.Enroll.BootstrapTTL = c.EnrollRate, c.BootstrapUses, c.BootstrapTTL
	s.Sessions = c.sessions()
	return s
}
