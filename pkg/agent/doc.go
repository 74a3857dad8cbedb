// Package agent is the SDK for programs that act as remote agents of the
// client manager. It implements the agent side of the protocol defined in
// package agentproto (and described in docs/protocol.md):
//
//   - [Enroll] exchanges a one-time enrollment token for a permanent agent
//     credential; [SaveCredential] and [LoadCredential] keep it on disk.
//   - [Agent] holds one WebSocket connection to the server: it says hello,
//     heartbeats at the server's interval, runs the commands the server sends
//     through a [Runner] (by default [ExecRunner]: argv only, never a shell,
//     one process group per command), streams their output, and reports
//     results until the server acknowledges them. It reconnects until its
//     context is cancelled or the server revokes its credential: within a
//     second after a clean server close (1001, 1012), otherwise with
//     exponential backoff and full jitter. With [Config.JournalPath] it
//     keeps what it must remember across its own restarts in a file that
//     it locks against a second agent.
//   - When the server's welcome lists streams (agentproto.FeatureStreams),
//     [Agent] also serves the streams the server opens, under the agent's
//     own policy: terminals ([Config.Terminal], package terminal: a shell
//     on a PTY, killed with its whole session when the stream or the
//     connection ends) and file transfers ([Config.Files], package files:
//     read, resumable write, stat and list under the configured roots).
//     Stream data never delays the command messages: the connection's
//     writer sends every other message first. With
//     [Config.TerminalStatePath] the sessions a killed agent left are
//     killed when the next one starts.
//   - [AllowList] decides which executables the server may run.
//   - [HeartbeatGroup] drives the heartbeats of many agents in one process
//     from a single goroutine (load simulation).
//
// A minimal agent:
//
//	resp, err := agent.Enroll(ctx, server, agentproto.EnrollRequest{Token: token}, nil)
//	// handle err, then agent.SaveCredential(path, agent.StoredCredential{...})
//	a, err := agent.New(agent.Config{
//		ServerURL:  server,
//		Credential: resp.Credential,
//		Allowed:    []string{"uname", "uptime"},
//	})
//	// handle err
//	err = a.Run(ctx) // blocks; nil after ctx is cancelled
package agent
