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
	"math"
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
	lim       limits
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
		Proxy:                 http.ProxyFromEnvironment,
		TLSClientConfig:       tlsConf,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: defaultLimits.request,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          2,
	}
	return &client{base: u, tokenPath: tokenPath, node: node, http: &http.Client{Transport: tr}, lim: defaultLimits}, nil
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

// Bounds of what the API server's answers may take. A list is read as a
// stream, one pod at a time, and only what labels need is kept of each:
// memory is bounded by the object bound and the pods kept (MaxPods), and
// a list that never ends (pages of megabytes with a continue token each,
// a body that never ends, an answer dribbled a byte at a time) fails on
// the byte bounds or the list's timeout.
type limits struct {
	// page bounds one page of the list (500 pods of ~20 KiB: 10 MiB),
	// list all pages together, object one pod or watch event (the API
	// server stores objects of up to 1.5 MiB).
	page, list, object int64
	// request bounds the wait for an answer's headers; listTimeout a
	// whole list, all pages read.
	request, listTimeout time.Duration
}

var defaultLimits = limits{
	page:        32 << 20,
	list:        64 << 20,
	object:      8 << 20,
	request:     30 * time.Second,
	listTimeout: 2 * time.Minute,
}

// pageSize is the pods asked for per page.
const pageSize = 500

// boundedReader fails once more than the bytes of its current value
// (reset before each), its page or its list were read. What it counts is
// what the JSON decoder read, its read-ahead included.
type boundedReader struct {
	r                 io.Reader
	lim               *limits
	value, page, list int64
	valueWhat         string
}

func (b *boundedReader) Read(p []byte) (int, error) {
	switch {
	case b.value > b.lim.object:
		return 0, fmt.Errorf("%s over %d bytes", b.valueWhat, b.lim.object)
	case b.page > b.lim.page:
		return 0, fmt.Errorf("a list page over %d bytes", b.lim.page)
	case b.list > b.lim.list:
		return 0, fmt.Errorf("the pod list over %d bytes in all its pages", b.lim.list)
	}
	n, err := b.r.Read(p)
	b.value += int64(n)
	b.page += int64(n)
	b.list += int64(n)
	return n, err
}

func (b *boundedReader) startValue(what string) { b.value, b.valueWhat = 0, what }

// listed is what a list gives: the pods kept (at most keep), whether some
// were left out for that bound, errors of pods left out as invalid (the
// first few), and the list's resourceVersion.
type listed struct {
	pods    []*pod
	full    bool
	invalid []error
	rv      string
}

// list reads the node's pods page by page, at most keep of them: once
// more than keep are read the list stops, and the watch goes on from its
// version.
func (c *client) list(ctx context.Context, keep int) (*listed, error) {
	ctx, cancel := context.WithTimeout(ctx, c.lim.listTimeout)
	defer cancel()
	out := &listed{}
	body := &boundedReader{lim: &c.lim}
	cont := ""
	for page := 1; ; page++ {
		q := url.Values{"limit": {strconv.Itoa(pageSize)}}
		if cont != "" {
			q.Set("continue", cont)
		}
		resp, err := c.request(ctx, q)
		if err != nil {
			return nil, c.listError(ctx, page, err)
		}
		body.r, body.page = resp.Body, 0
		meta, err := decodePage(body, keep, out)
		resp.Body.Close()
		if err != nil {
			return nil, c.listError(ctx, page, err)
		}
		if out.rv == "" {
			// Every page is of the first page's snapshot.
			out.rv = meta.ResourceVersion
		}
		if meta.Continue == "" || out.full {
			if out.rv == "" {
				return nil, fmt.Errorf("the pod list, page %d: no resourceVersion", page)
			}
			return out, nil
		}
		cont = meta.Continue
	}
}

func (c *client) listError(ctx context.Context, page int, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("the pod list, page %d: not read within %v: %w", page, c.lim.listTimeout, err)
	}
	return fmt.Errorf("the pod list, page %d: %w", page, err)
}

type listMeta struct {
	ResourceVersion string `json:"resourceVersion"`
	Continue        string `json:"continue"`
}

// decodePage reads one page of a pod list, {"metadata":{...},"items":[...]}
// in any order, as a stream: each pod is decoded alone and turned into
// what labels need before the next is read. Once more than keep pods are
// read the page is left unread if its metadata came before its items (as
// the API server writes them), else the remaining items are read past.
func decodePage(body *boundedReader, keep int, out *listed) (listMeta, error) {
	var meta listMeta
	dec := json.NewDecoder(body)
	body.startValue("the list")
	if err := expectDelim(dec, '{'); err != nil {
		return meta, err
	}
	seenMeta := false
	for dec.More() {
		body.startValue("a key")
		tok, err := dec.Token()
		if err != nil {
			return meta, err
		}
		switch tok {
		case "metadata":
			body.startValue("the list's metadata")
			if err := dec.Decode(&meta); err != nil {
				return meta, fmt.Errorf("metadata: %w", err)
			}
			seenMeta = true
		case "items":
			body.startValue("the items")
			tok, err := dec.Token()
			if err != nil {
				return meta, err
			}
			if tok == nil { // "items": null
				continue
			}
			if tok != json.Delim('[') {
				return meta, fmt.Errorf("items: %v, want an array", tok)
			}
			for dec.More() {
				body.startValue("a pod")
				if out.full {
					if seenMeta {
						return meta, nil
					}
					if err := dec.Decode(new(json.RawMessage)); err != nil {
						return meta, fmt.Errorf("item: %w", err)
					}
					continue
				}
				var o podObject
				if err := dec.Decode(&o); err != nil {
					return meta, fmt.Errorf("item %d: %w", len(out.pods)+len(out.invalid)+1, err)
				}
				p, err := toPod(&o)
				switch {
				case err != nil:
					if len(out.invalid) < 10 {
						out.invalid = append(out.invalid, err)
					}
				case len(out.pods) >= keep:
					out.full = true
				default:
					out.pods = append(out.pods, p)
				}
			}
			body.startValue("the items' end")
			if err := expectDelim(dec, ']'); err != nil {
				return meta, err
			}
		default:
			body.startValue(fmt.Sprintf("field %.40q", tok))
			if err := dec.Decode(new(json.RawMessage)); err != nil {
				return meta, fmt.Errorf("%.40q: %w", tok, err)
			}
		}
	}
	return meta, expectDelim(dec, '}')
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return fmt.Errorf("%v where %v was expected", tok, want)
	}
	return nil
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
	// A watch is one long answer: only its events are bounded (the page
	// and list bounds do not apply), and its time by ctx.
	lim := c.lim
	lim.page, lim.list = math.MaxInt64, math.MaxInt64
	body := &boundedReader{r: resp.Body, lim: &lim}
	dec := json.NewDecoder(body)
	for {
		var ev watchEvent
		body.startValue("a watch event")
		body.page, body.list = 0, 0
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
