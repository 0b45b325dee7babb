package web

import (
	"bufio"
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
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/probe-exporter/probe_exporter/internal/testkit"
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

// serveBounded runs a Server of at most max connections whose /block
// requests stay in the handler until release is closed (each says so on
// entered), until the test ends; it returns the address and the registry
// of its metrics.
func serveBounded(t *testing.T, max int, entered chan<- struct{}, release <-chan struct{}) (string, *prometheus.Registry) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/-/healthy", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "Healthy\n") })
	mux.HandleFunc("/block", func(w http.ResponseWriter, _ *http.Request) {
		entered <- struct{}{}
		<-release
	})
	reg := prometheus.NewRegistry()
	s := &Server{
		Handler:        mux,
		Flags:          &web.FlagConfig{WebListenAddresses: &[]string{}, WebSystemdSocket: new(bool), WebConfigFile: new(string)},
		Logger:         slog.New(slog.DiscardHandler),
		MaxConnections: max,
		Registerer:     reg,
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
	return l.Addr().String(), reg
}

// metricValue is the value of the series of name with the label
// reason=reason ("" for none) in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "reason" {
					got = lp.GetValue()
				}
			}
			if got == reason {
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	t.Fatalf("no series %s{reason=%q}", name, reason)
	return 0
}

// get asks for path on a connection of its own.
func getOnce(addr, path string) (int, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestConnectionBound: connections that wait without a request in a
// handler (silent ones, slowloris headers trickling in, idle keep-alives)
// cannot hold more than --web.max-connections file descriptors, nor keep
// a scrape out: the oldest is closed for each newcomer. When every
// connection is in a handler, the newcomer is closed instead.
func TestConnectionBound(t *testing.T) {
	t.Run("waiting connections make room", func(t *testing.T) {
		const max = 4
		addr, reg := serveBounded(t, max, nil, nil)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for i := range 3 * max {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			switch i % 3 {
			case 1: // a slowloris: headers begun, never ended
				io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\nX-Slow: a")
			case 2: // a keep-alive connection idle after one request
				io.WriteString(c, "GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatalf("request on connection %d: %v", i, err)
				}
				io.Copy(io.Discard, resp.Body)
			}
		}
		// Connections are accepted in order, so when this answers,
		// every one before it was seen.
		if code, err := getOnce(addr, "/-/healthy"); err != nil || code != 200 {
			t.Fatalf("a scrape among %d waiting connections: %d, %v", len(conns), code, err)
		}
		if open := metricValue(t, reg, "probe_exporter_http_connections", ""); open > max {
			t.Errorf("%v connections open, bound %d", open, max)
		}
		// 3*max+1 connections, max of them kept: the rest closed.
		if closed := metricValue(t, reg, "probe_exporter_http_connections_closed_total", "waiting"); closed != 2*max+1 {
			t.Errorf("closed_total{reason=waiting} = %v, want %d", closed, 2*max+1)
		}
		// The oldest was closed by the server: its read ends.
		if _, err := conns[0].Read(make([]byte, 1)); err == nil {
			t.Error("the oldest waiting connection still open")
		}
	})
	t.Run("all busy: the newcomer is closed", func(t *testing.T) {
		const max = 2
		entered, release := make(chan struct{}), make(chan struct{})
		addr, reg := serveBounded(t, max, entered, release)
		codes := make(chan int, max)
		for range max {
			go func() {
				code, _ := getOnce(addr, "/block")
				codes <- code
			}()
			<-entered
		}
		if _, err := getOnce(addr, "/-/healthy"); err == nil {
			t.Error("a connection past the bound, all others busy, was served")
		}
		if closed := metricValue(t, reg, "probe_exporter_http_connections_closed_total", "all_busy"); closed != 1 {
			t.Errorf("closed_total{reason=all_busy} = %v, want 1", closed)
		}
		close(release)
		for range max {
			if code := <-codes; code != 200 {
				t.Errorf("a busy request answered %d", code)
			}
		}
		// The busy ones closed (no keep-alive): room again. The server
		// forgets them as their goroutines end.
		testkit.Eventually(t, "a connection once the busy ones ended", func() bool {
			code, err := getOnce(addr, "/-/healthy")
			return err == nil && code == 200
		})
	})
}

// TestMaxHeaderBytes: headers past MaxHeaderBytes are answered 431, so
// each connection reading headers holds at most that much.
func TestMaxHeaderBytes(t *testing.T) {
	addr := startServer(t, "")
	for _, tc := range []struct {
		name string
		size int
		code int
	}{
		{"small", 1 << 10, 200},
		{"over the bound", MaxHeaderBytes + 8<<10, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+addr+"/-/healthy", nil)
			req.Header.Set("X-Big", strings.Repeat("a", tc.size))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Errorf("%d bytes of headers: %d, want %d", tc.size, resp.StatusCode, tc.code)
			}
		})
	}
}
