package cmservice

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/home-console/client-manager/internal/enroll"
	"github.com/home-console/client-manager/pkg/agent"
	"github.com/home-console/client-manager/pkg/agentproto"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns their paths and a pool trusting the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "client-manager test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestTLS: with a certificate configured, an SDK agent enrolls over
// https, connects over wss and runs a command requested over https; plain
// HTTP and TLS below 1.2 are refused.
func TestTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	svc, plain := startService(t, Config{TLSCert: certFile, TLSKey: keyFile})
	base := strings.Replace(plain, "http://", "https://", 1)
	tlsConf := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConf}}

	token, err := os.ReadFile(filepath.Join(svc.cfg.DataDir, enroll.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	id, err := agent.Enroll(t.Context(), base, agentproto.EnrollRequest{Token: strings.TrimSpace(string(token)), Name: "tls"}, client)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{ServerURL: base, Credential: id.Credential, Allowed: []string{"uname"}, Logger: quietLog(t), TLSConfig: tlsConf})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	eventually(t, 5*time.Second, "agent online over wss", func() bool { return svc.app.hub.Online(id.AgentID) })

	res, err := client.Post(base+"/api/commands/"+id.AgentID, "application/json", strings.NewReader(`{"command":"uname"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var cmd struct{ Status, Stdout string }
	if err := json.NewDecoder(res.Body).Decode(&cmd); err != nil || res.StatusCode != 200 || cmd.Status != "completed" || !strings.HasPrefix(cmd.Stdout, "Linux") {
		t.Fatalf("uname over https = %d %+v %v", res.StatusCode, cmd, err)
	}
	if res.TLS == nil || res.TLS.Version < tls.VersionTLS12 || res.ProtoMajor != 1 {
		t.Fatalf("TLS state %+v, protocol %s", res.TLS, res.Proto)
	}
	if hsts := res.Header.Get("Strict-Transport-Security"); hsts == "" {
		t.Fatal("no Strict-Transport-Security over TLS")
	}

	if res, err := http.Get(plain + "/health"); err == nil {
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("plain HTTP to the TLS port = %d, want 400", res.StatusCode)
		}
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}}}
	if res, err := old.Get(base + "/health"); err == nil {
		res.Body.Close()
		t.Fatal("TLS 1.1 handshake succeeded")
	}
}

func TestTLSNeedsCertAndKey(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	for _, cfg := range []Config{{TLSCert: certFile}, {TLSKey: keyFile}} {
		cfg.Host, cfg.DataDir = "127.0.0.1", t.TempDir()
		_, err := New(cfg, quietLog(t)).Start(t.Context())
		if err == nil || !strings.Contains(err.Error(), "CLIENT_MANAGER_TLS_CERT and CLIENT_MANAGER_TLS_KEY") {
			t.Fatalf("Start with %+v = %v, want an error naming both variables", cfg, err)
		}
	}
	_, err := New(Config{Host: "127.0.0.1", DataDir: t.TempDir(), TLSCert: keyFile, TLSKey: certFile}, quietLog(t)).Start(t.Context())
	if err == nil {
		t.Fatal("Start with swapped certificate and key succeeded")
	}
}
