package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestTLSAndBasicAuth serves over TLS with basic auth from
// --web.config.file and scrapes with a real TLS client.
func TestTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	os.WriteFile(filepath.Join(dir, "web.yml"), []byte("tls_server_config:\n  cert_file: "+filepath.Join(dir, "cert.pem")+
		"\n  key_file: "+filepath.Join(dir, "key.pem")+"\nbasic_auth_users:\n  prom: "+string(hash)+"\n"), 0o600)

	addr := freePort(t)
	pool := x509.NewCertPool()
	cert, _ := x509.ParseCertificate(der)
	pool.AddCert(cert)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 5 * time.Second}
	exporterOnCheck(t, addr, func() bool {
		resp, err := client.Get("https://" + addr + "/-/healthy")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, "--web.listen-address="+addr, "--web.config.file="+filepath.Join(dir, "web.yml"))

	req, _ := http.NewRequest("GET", "https://"+addr+"/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d, want 401", resp.StatusCode)
	}
	req.SetBasicAuth("prom", "s3cret")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(body.String(), "probe_exporter_build_info") {
		t.Fatalf("with credentials: %d", resp.StatusCode)
	}
	if _, err := http.Get("http://" + addr + "/metrics"); err == nil {
		// Plain HTTP to a TLS port gets a 400 from Go's server, not metrics.
		r2, _ := http.Get("http://" + addr + "/metrics")
		if r2 != nil && r2.StatusCode == 200 {
			t.Fatal("plain HTTP served metrics")
		}
	}
}
