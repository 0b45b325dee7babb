package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
)

// bcrypt of "s3cret" (cost 4), for basic_auth_users.
const s3cretHash = "$2a$04$m3LIjK5pu5vMcBPO6VhGs.f3GRQwJm77V9M1O7/UuQ.Tbg9NWfvWG"

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "probe_exporter test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// startServer runs a Server with the web config on a port of its own until the
// test ends, and returns its address.
func startServer(t *testing.T, webConfig string) string {
	t.Helper()
	flags := &web.FlagConfig{WebListenAddresses: &[]string{}, WebSystemdSocket: new(bool), WebConfigFile: new(string)}
	if webConfig != "" {
		path := filepath.Join(t.TempDir(), "web.yml")
		if err := os.WriteFile(path, []byte(webConfig), 0o600); err != nil {
			t.Fatal(err)
		}
		*flags.WebConfigFile = path
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := &Server{
		Handler: Handler(Options{Registry: reg, Gatherer: reg, TelemetryPath: "/metrics", Logger: slog.New(slog.DiscardHandler)}),
		Flags:   flags,
		Logger:  slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, []net.Listener{l}) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Serve after its context ended: %v", err)
		}
	})
	return l.Addr().String()
}

// TestWebConfig: TLS and basic auth come from the web config file, as
// in every exporter built on exporter-toolkit.
func TestWebConfig(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t, t.TempDir())
	tlsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, tc := range []struct {
		name       string
		webConfig  string
		client     *http.Client
		scheme     string
		user, pass string
		code       int
	}{
		{name: "plain", client: http.DefaultClient, scheme: "http", code: 200},
		{name: "basic auth, right password", webConfig: "basic_auth_users:\n  alice: " + s3cretHash + "\n", client: http.DefaultClient, scheme: "http", user: "alice", pass: "s3cret", code: 200},
		{name: "basic auth, wrong password", webConfig: "basic_auth_users:\n  alice: " + s3cretHash + "\n", client: http.DefaultClient, scheme: "http", user: "alice", pass: "nope", code: 401},
		{name: "basic auth, none given", webConfig: "basic_auth_users:\n  alice: " + s3cretHash + "\n", client: http.DefaultClient, scheme: "http", code: 401},
		{name: "TLS", webConfig: "tls_server_config:\n  cert_file: " + certFile + "\n  key_file: " + keyFile + "\n", client: tlsClient, scheme: "https", code: 200},
		{name: "TLS, plain HTTP asked", webConfig: "tls_server_config:\n  cert_file: " + certFile + "\n  key_file: " + keyFile + "\n", client: http.DefaultClient, scheme: "http", code: 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, tc.webConfig)
			req, _ := http.NewRequest("GET", tc.scheme+"://"+addr+"/-/healthy", nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			// The listener queues the connection until the server
			// accepts it: one try is enough.
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.code)
			}
		})
	}
}

// TestServerRunFails: an address that cannot be listened on ends Run
// with an error, without waiting for its context.
func TestServerRunFails(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addrs := []string{l.Addr().String()} // taken
	s := &Server{
		Handler: http.NotFoundHandler(),
		Flags:   &web.FlagConfig{WebListenAddresses: &addrs, WebSystemdSocket: new(bool), WebConfigFile: new(string)},
		Logger:  slog.New(slog.DiscardHandler),
	}
	if err := s.Run(context.Background()); err == nil {
		t.Fatal("Run on a taken address returned nil")
	}
}
