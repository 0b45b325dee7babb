// Command syscalls measures what each syscall counter adds to a syscall:
// a getppid() loop pinned to one CPU, with nothing attached, with each
// counter object given on the command line attached to raw_tp/sys_enter
// (and any other tracepoint programs it has), rounds interleaved; it
// prints the median ns per call of each and the cost it adds.
//
//	go run ./bench/syscalls -rounds 7 none=- defaults=defaults/*.bpf.o hash=bench/syscalls/hash.bpf.o ...
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

func main() {
	rounds := flag.Int("rounds", 7, "interleaved rounds")
	calls := flag.Int("calls", 2_000_000, "getppid() calls per measurement")
	cpu := flag.Int("cpu", 0, "CPU to pin the loop to")
	flag.Parse()
	type variant struct {
		name  string
		files []string
	}
	var vs []variant
	for _, a := range flag.Args() {
		name, globs, _ := strings.Cut(a, "=")
		v := variant{name: name}
		for _, g := range strings.Split(globs, ",") {
			m, _ := filepath.Glob(g)
			v.files = append(v.files, m...)
		}
		vs = append(vs, v)
	}
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(*cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		fail(err)
	}
	res := map[string][]float64{}
	for r := 0; r < *rounds; r++ {
		for _, v := range vs {
			closeAll, err := attach(v.files)
			if err != nil {
				fail(fmt.Errorf("%s: %w", v.name, err))
			}
			t0 := time.Now()
			for i := 0; i < *calls; i++ {
				unix.Getppid()
			}
			res[v.name] = append(res[v.name], float64(time.Since(t0).Nanoseconds())/float64(*calls))
			closeAll()
		}
	}
	base := median(res[vs[0].name])
	fmt.Printf("%-16s %10s %10s\n", "counter", "ns/call", "added")
	for _, v := range vs {
		m := median(res[v.name])
		fmt.Printf("%-16s %10.1f %10.1f\n", v.name, m, m-base)
	}
}

// attach loads each object and attaches its tracing programs by section.
func attach(files []string) (func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, f := range files {
		spec, err := ebpf.LoadCollectionSpec(f)
		if err != nil {
			closeAll()
			return nil, err
		}
		coll, err := ebpf.NewCollection(spec)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		closers = append(closers, coll.Close)
		for name, p := range spec.Programs {
			var l link.Link
			sec := p.SectionName
			switch {
			case strings.HasPrefix(sec, "raw_tp/"):
				l, err = link.AttachRawTracepoint(link.RawTracepointOptions{Name: strings.TrimPrefix(sec, "raw_tp/"), Program: coll.Programs[name]})
			case strings.HasPrefix(sec, "tp_btf/"):
				l, err = link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
			case strings.HasPrefix(sec, "tracepoint/"):
				grp, ev, _ := strings.Cut(strings.TrimPrefix(sec, "tracepoint/"), "/")
				l, err = link.Tracepoint(grp, ev, coll.Programs[name], nil)
			default:
				continue
			}
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("%s %s: %w", f, sec, err)
			}
			closers = append(closers, func() { l.Close() })
		}
	}
	return closeAll, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "syscalls:", err)
	os.Exit(1)
}
