package testkit

import (
	"fmt"
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
	code, header, body, err := TryDo(req)
	if err != nil {
		t.Fatal(err)
	}
	return code, header, body
}

// TryGet fetches url for a test that polls a server which may not answer
// yet: a transport error is returned, not a failure.
func TryGet(url string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", err
	}
	code, _, body, err := TryDo(req)
	return code, string(body), err
}

// TryDo is Do returning the error, for a poll or a goroutine of the test
// (which must not end the test itself).
func TryDo(req *http.Request) (int, http.Header, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%s %s: %w", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, resp.Header, b, fmt.Errorf("reading %s: %w", req.URL, err)
	}
	return resp.StatusCode, resp.Header, b, nil
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
