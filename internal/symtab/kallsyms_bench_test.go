package symtab

import (
	"math/rand/v2"
	"runtime"
	"testing"
)

// BenchmarkKallsymsSym resolves random kernel text addresses with the
// host's /proc/kallsyms, and reports the heap the table holds.
func BenchmarkKallsymsSym(b *testing.B) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	k := NewKallsyms("/proc/kallsyms")
	if k.Len() == 0 {
		b.Skip("no kernel symbols with addresses")
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	lo, hi := k.textRange()
	r := rand.New(rand.NewPCG(1, 2))
	addrs := make([]uint64, 4096)
	for i := range addrs {
		addrs[i] = lo + r.Uint64N(hi-lo)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, ok := k.Sym(addrs[i%len(addrs)]); !ok {
			b.Fatal("no symbol")
		}
	}
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/(1<<20), "heap-MiB")
	runtime.KeepAlive(k)
}
