/* The worker: a process to probe. It says "ready", then for each line n
 * it reads calls work() n times and says "done"; it exits at the end of
 * its input. work() is a real function (not inlined) for uprobes. */
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) int work(int i) { asm volatile(""); return 2 * i; }

int main(void) {
	char line[64];
	printf("ready\n"); fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		int n = atoi(line);
		for (int i = 0; i < n; i++) work(i);
		printf("done\n"); fflush(stdout);
	}
	return 0;
}
