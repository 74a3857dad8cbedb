package cmservice

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/home-console/client-manager/internal/connlimit"
	"github.com/home-console/client-manager/internal/drain"
)

// loadTLS returns the server's TLS configuration, or nil when neither
// file is given (plain HTTP).
func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	switch {
	case certFile == "" && keyFile == "":
		return nil, nil
	case certFile == "" || keyFile == "":
		return nil, errors.New("TLS needs both CLIENT_MANAGER_TLS_CERT and CLIENT_MANAGER_TLS_KEY " +
			"(PEM certificate and key files); set both to serve HTTPS and wss://, or neither for plain HTTP")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s / key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// newServer returns the HTTP server of the client manager's port. It
// speaks HTTP/1.1 only, over TLS when tlsConf is not nil: agent WebSocket
// upgrades need HTTP/1.1, and one protocol keeps the port simple. Every
// request's context carries notice, for long-lived handlers to watch (see
// internal/drain). Its timeouts bound every connection; the long-lived
// responses move their own deadlines (internal/longlived).
func newServer(h http.Handler, tlsConf *tls.Config, timeouts connlimit.Timeouts, notice *drain.Notice, log *slog.Logger) *http.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	srv := &http.Server{
		Handler:     h,
		BaseContext: func(net.Listener) context.Context { return notice.Attach(context.Background()) },
		TLSConfig:   tlsConf,
		Protocols:   &protos,
		ErrorLog:    slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	timeouts.Apply(srv)
	return srv
}
