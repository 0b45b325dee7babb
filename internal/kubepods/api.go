package kubepods

// The API server is reached with net/http and encoding/json rather than
// client-go: the exporter needs one list and one watch of one resource
// with a field selector, and client-go (with apimachinery and its
// generated types) would be by far the largest dependency of a static
// binary that otherwise has no use for it. What the client does is what
// client-go's in-cluster config and reflector do: the service account's
// token (re-read on every request, as bound tokens are rotated) and CA,
// KUBERNETES_SERVICE_HOST and _PORT, list then watch from the list's
// resourceVersion, watch again from the last version seen, list again when
// the server says the version is gone (410).

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// DefaultServiceAccountDir is where Kubernetes mounts a pod's service
// account.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// InClusterAPIServer is the API server's URL as pods see it, from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT; empty outside a pod.
func InClusterAPIServer() string {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return ""
	}
	return "https://" + net.JoinHostPort(host, port)
}

// client lists and watches the pods of one node.
type client struct {
	base      *url.URL
	tokenPath string
	node      string
	http      *http.Client
}

func newClient(apiServer, saDir, node string) (*client, error) {
	u, err := url.Parse(apiServer)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return nil, fmt.Errorf("API server %q is not a URL", apiServer)
	}
	tlsConf := &tls.Config{MinVersion: tls.VersionTLS12}
	caPath := filepath.Join(saDir, "ca.crt")
	ca, err := os.ReadFile(caPath)
	if err != nil {
		return nil, fmt.Errorf("service account CA: %w", err)
	}
	tlsConf.RootCAs = x509.NewCertPool()
	if !tlsConf.RootCAs.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("service account CA %s: no PEM certificate", caPath)
	}
	tokenPath := filepath.Join(saDir, "token")
	if _, err := readToken(tokenPath); err != nil {
		return nil, err
	}
	tr := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		TLSClientConfig:     tlsConf,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     90 * time.Second,
		MaxIdleConns:        2,
	}
	return &client{base: u, tokenPath: tokenPath, node: node, http: &http.Client{Transport: tr}}, nil
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("service account token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("service account token %s is empty", path)
	}
	return tok, nil
}

// The parts of the API's objects the resolver reads; the rest of each
// object is skipped by the decoder.
type (
	objectMeta struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		UID             string            `json:"uid"`
		ResourceVersion string            `json:"resourceVersion"`
		Annotations     map[string]string `json:"annotations"`
	}
	containerStatus struct {
		Name        string `json:"name"`
		ContainerID string `json:"containerID"`
	}
	podObject struct {
		Metadata objectMeta `json:"metadata"`
		Status   struct {
			ContainerStatuses          []containerStatus `json:"containerStatuses"`
			InitContainerStatuses      []containerStatus `json:"initContainerStatuses"`
			EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
		} `json:"status"`
	}
	podList struct {
		Metadata struct {
			ResourceVersion string `json:"resourceVersion"`
			Continue        string `json:"continue"`
		} `json:"metadata"`
		Items []podObject `json:"items"`
	}
	watchEvent struct {
		Type   string          `json:"type"`
		Object json.RawMessage `json:"object"`
	}
	status struct {
		Code    int    `json:"code"`
		Reason  string `json:"reason"`
		Message string `json:"message"`
	}
)

// errGone: the watch's resourceVersion is too old; list again.
var errGone = errors.New("resource version gone (410)")

// statusError is an answer other than 200.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("API server answered %d: %s", e.code, e.body)
}

func (c *client) request(ctx context.Context, q url.Values) (*http.Response, error) {
	tok, err := readToken(c.tokenPath)
	if err != nil {
		return nil, err
	}
	q.Set("fieldSelector", "spec.nodeName="+c.node)
	u := c.base.JoinPath("/api/v1/pods")
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "probe_exporter")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		msg := strings.TrimSpace(string(b))
		var st status
		if json.Unmarshal(b, &st) == nil && st.Message != "" {
			msg = st.Message
		}
		if resp.StatusCode == http.StatusGone {
			return nil, errGone
		}
		return nil, &statusError{code: resp.StatusCode, body: msg}
	}
	return resp, nil
}

// maxListBytes bounds one page of the list (500 pods), maxEventBytes one
// watch event (the API server stores objects of up to 1.5 MiB).
const (
	maxListBytes  = 64 << 20
	maxEventBytes = 16 << 20
)

// eventLimit fails a watch stream whose event (n bytes read since the
// last reset, the decoder's read-ahead included) is over maxEventBytes.
type eventLimit struct {
	r io.Reader
	n int64
}

func (l *eventLimit) Read(p []byte) (int, error) {
	if l.n > maxEventBytes {
		return 0, fmt.Errorf("a watch event over %d bytes", maxEventBytes)
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}

// list returns the node's pods and the list's resourceVersion, page by
// page.
func (c *client) list(ctx context.Context) ([]podObject, string, error) {
	var pods []podObject
	cont := ""
	for {
		q := url.Values{"limit": {"500"}}
		if cont != "" {
			q.Set("continue", cont)
		}
		resp, err := c.request(ctx, q)
		if err != nil {
			return nil, "", err
		}
		var l podList
		err = json.NewDecoder(io.LimitReader(resp.Body, maxListBytes)).Decode(&l)
		resp.Body.Close()
		if err != nil {
			return nil, "", fmt.Errorf("decoding the pod list: %w", err)
		}
		pods = append(pods, l.Items...)
		if l.Metadata.Continue == "" {
			return pods, l.Metadata.ResourceVersion, nil
		}
		cont = l.Metadata.Continue
	}
}

// watch streams the node's pod events from version rv to fn until the
// server ends the watch (nil), the stream breaks, or the version is gone
// (errGone). fn gets each event's type and pod; BOOKMARK events only move
// the version on. It returns the last version seen.
func (c *client) watch(ctx context.Context, rv string, timeout time.Duration, fn func(typ string, p *podObject)) (string, error) {
	q := url.Values{
		"watch":               {"true"},
		"resourceVersion":     {rv},
		"allowWatchBookmarks": {"true"},
		"timeoutSeconds":      {strconv.Itoa(int(timeout.Seconds()))},
	}
	resp, err := c.request(ctx, q)
	if err != nil {
		return rv, err
	}
	defer resp.Body.Close()
	body := &eventLimit{r: resp.Body}
	dec := json.NewDecoder(body)
	for {
		var ev watchEvent
		body.n = 0
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return rv, nil
			}
			return rv, fmt.Errorf("watch stream: %w", err)
		}
		switch ev.Type {
		case "ERROR":
			var st status
			_ = json.Unmarshal(ev.Object, &st)
			if st.Code == http.StatusGone {
				return rv, errGone
			}
			return rv, fmt.Errorf("watch error %d %s: %s", st.Code, st.Reason, st.Message)
		case "ADDED", "MODIFIED", "DELETED", "BOOKMARK":
			var p podObject
			if err := json.Unmarshal(ev.Object, &p); err != nil {
				return rv, fmt.Errorf("watch event %s: %w", ev.Type, err)
			}
			if p.Metadata.ResourceVersion != "" {
				rv = p.Metadata.ResourceVersion
			}
			if ev.Type != "BOOKMARK" {
				fn(ev.Type, &p)
			}
		}
	}
}
