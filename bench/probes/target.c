// Benchmark target: times N calls of work() (uprobe target) and N firings
// of a USDT probe, and how long after exec its USDT semaphore was set.
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/sdt.h>

unsigned short bench_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

__attribute__((noinline)) int work(int i) { asm volatile(""); return i + 1; }

static double now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
	long n = argc > 2 ? atol(argv[2]) : 1000000;
	const char *mode = argc > 1 ? argv[1] : "calls";
	if (strcmp(mode, "attach") == 0) {
		/* How long after exec the probe becomes active (its semaphore set). */
		double t0 = now();
		while (!bench_tick_semaphore) {
			if (now() - t0 > 10e9) { printf("attach_ms=timeout\n"); return 1; }
		}
		STAP_PROBE1(bench, tick, 1);
		printf("attach_ms=%.3f\n", (now() - t0) / 1e6);
		return 0;
	}
	if (argc > 3 && strcmp(argv[3], "wait") == 0) {
		/* Time only once the probes are attached. */
		double w = now();
		while (!bench_tick_semaphore && now() - w < 10e9)
			;
	}
	double t0 = now();
	for (long i = 0; i < n; i++) work(i);
	double t1 = now();
	for (long i = 0; i < n; i++) STAP_PROBE1(bench, tick, i);
	double t2 = now();
	printf("uprobe_ns=%.1f usdt_ns=%.1f\n", (t1 - t0) / n, (t2 - t1) / n);
	return 0;
}
