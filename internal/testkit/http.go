package testkit

import (
	"io"
	"net"
	"net/http"
	"testing"
)

// client is the HTTP client of every fetch: bounded by WaitLimit, so that
// a server that never answers fails the test instead of hanging it, and
// leaving Content-Encoding to the caller (a test that asks for gzip sees
// the bytes the server sent).
var client = &http.Client{
	Timeout:   WaitLimit,
	Transport: &http.Transport{DisableCompression: true, Proxy: nil},
}

// Get fetches url and returns the status, headers and body; a transport
// error fails the test.
func Get(t testing.TB, url string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	code, header, body := Do(t, req)
	return code, header, string(body)
}

// Do sends req and returns the status, headers and body as sent (not
// decompressed); a transport error fails the test.
func Do(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", req.URL, err)
	}
	return resp.StatusCode, resp.Header, b
}

// TryGet fetches url for a test that polls a server which may not answer
// yet: a transport error is returned, not a failure.
func TryGet(url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// FreePort returns a loopback address (host:port) free at the time of the
// call, for a server the test starts.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
