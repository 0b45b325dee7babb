package kubepods

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hostilePod is a pod of the list, with an annotation of pad bytes.
func hostilePod(i, pad int) string {
	return fmt.Sprintf(`{"metadata":{"uid":"%08x-0000-4000-8000-000000000000","namespace":"ns","name":"p%d","annotations":{"pad":"%s"}},"status":{"containerStatuses":[{"name":"c","containerID":"containerd://%064x"}]}}`,
		i, i, strings.Repeat("x", pad), i)
}

// TestHostileAPIServer: whatever a hostile API server answers to the list,
// the client fails with a named error within its bounds, or keeps at most
// the pods it may; it never reads without end.
func TestHostileAPIServer(t *testing.T) {
	small := limits{page: 4 << 20, list: 8 << 20, object: 1 << 20, request: 5 * time.Second, listTimeout: 3 * time.Second}
	for _, tc := range []struct {
		name string
		lim  limits
		keep int
		// serve writes the answer to request n (from 1).
		serve func(w http.ResponseWriter, n int) error
		// want is in the error; empty: the list succeeds.
		want string
		// maxRequests bounds the requests the list may make.
		maxRequests int
		kept        int
	}{
		{
			name: "8 MB pages with endless continue tokens", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				_, err := fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7","continue":"c%d"},"items":[%s]}`, n, hostilePod(n, 8<<20-512))
				return err
			},
			want: "over 67108864 bytes in all its pages", maxRequests: 9,
		},
		{
			name: "pages of small pods with endless continue tokens stop at the cap", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				var items []string
				for i := range 500 {
					items = append(items, hostilePod(n*1000+i, 10))
				}
				_, err := fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7","continue":"c%d"},"items":[%s]}`, n, strings.Join(items, ","))
				return err
			},
			maxRequests: 3, kept: 1024,
		},
		{
			name: "a never ending body of pods stops at the cap", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				if _, err := io.WriteString(w, `{"metadata":{"resourceVersion":"7"},"items":[`); err != nil {
					return err
				}
				for i := 0; ; i++ {
					if _, err := fmt.Fprintf(w, "%s,", hostilePod(i, 10)); err != nil {
						return err
					}
				}
			},
			maxRequests: 1, kept: 1024,
		},
		{
			name: "a never ending body of blanks", lim: small, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				io.WriteString(w, `{"metadata":{"resourceVersion":"7"},"items":[`)
				blank := bytes.Repeat([]byte(" "), 64<<10)
				for {
					if _, err := w.Write(blank); err != nil {
						return err
					}
				}
			},
			want: "over 1048576 bytes", maxRequests: 1,
		},
		{
			name: "slow-loris answer", lim: small, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				for {
					if _, err := io.WriteString(w, " "); err != nil {
						return err
					}
					w.(http.Flusher).Flush()
					time.Sleep(100 * time.Millisecond)
				}
			},
			want: "not read within 3s", maxRequests: 1,
		},
		{
			name: "a huge JSON string", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				_, err := fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7"},"items":[%s]}`, hostilePod(1, 20<<20))
				return err
			},
			want: "a pod over 8388608 bytes", maxRequests: 1,
		},
		{
			name: "deep nesting", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				_, err := fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"uid":"u","x":%s}}]}`, strings.Repeat("[", 1<<20))
				return err
			},
			want: "exceeded max depth", maxRequests: 1,
		},
		{
			name: "names longer than Kubernetes allows", lim: defaultLimits, keep: 1024,
			serve: func(w http.ResponseWriter, n int) error {
				_, err := fmt.Fprintf(w, `{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"uid":"u","name":"%s"}},%s]}`, strings.Repeat("n", 1000), hostilePod(1, 1))
				return err
			},
			maxRequests: 1, kept: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			requests := 0
			srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				requests++
				w.Header().Set("Content-Type", "application/json")
				tc.serve(w, requests)
			}))
			defer srv.Close()
			c, err := newClient(srv.URL, serviceAccountDir(t, srv), "node-a")
			if err != nil {
				t.Fatal(err)
			}
			c.lim = tc.lim
			l, err := c.list(context.Background(), tc.keep)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("list: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("list: error %v, want %q", err, tc.want)
			case err == nil && (len(l.pods) != tc.kept || l.rv != "7"):
				t.Errorf("kept %d pods at version %q, want %d at 7", len(l.pods), l.rv, tc.kept)
			}
			if err != nil {
				t.Log(err)
			}
			if requests > tc.maxRequests {
				t.Errorf("%d requests, want at most %d", requests, tc.maxRequests)
			}
		})
	}
}

// FuzzDecodePage: whatever a list page holds, decoding it never panics,
// keeps at most the pods it may, each within Kubernetes' bounds.
func FuzzDecodePage(f *testing.F) {
	f.Add([]byte(`{"kind":"PodList","metadata":{"resourceVersion":"7","continue":"x"},"items":[` + hostilePod(1, 10) + `,` + hostilePod(2, 10) + `,` + hostilePod(3, 10) + `]}`))
	f.Add([]byte(`{"items":null,"metadata":{}}`))
	f.Add([]byte(`{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"uid":"u","x":` + strings.Repeat("[", 20000) + `}}]}`))
	f.Add([]byte(`{"metadata":{"resourceVersion":"7"},"items":[` + hostilePod(1, 5000) + `]}`))
	f.Add([]byte(`{"metadata":{"resourceVersion":"7"},"items":[{"metadata":{"uid":"u","name":"` + strings.Repeat("n", 300) + `"}}]}`))
	f.Add([]byte(`{"items":[{"metadata":{"uid":"u"},"status":{"containerStatuses":[` + strings.Repeat(`{"name":"c","containerID":"x://1"},`, 200) + `{}]}}]}`))
	lim := limits{page: 64 << 10, list: 128 << 10, object: 4 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		out := &listed{}
		decodePage(&boundedReader{r: bytes.NewReader(data), lim: &lim}, 2, out)
		if len(out.pods) > 2 {
			t.Fatalf("%d pods kept, at most 2", len(out.pods))
		}
		for _, p := range out.pods {
			if p.uid == "" || len(p.uid) > maxIDBytes || len(p.name) > maxNameBytes || len(p.containers) > maxContainersOfPod {
				t.Fatalf("pod out of bounds kept: %+v", p)
			}
		}
	})
}
