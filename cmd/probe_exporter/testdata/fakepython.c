/* A fake CPython for the profiler's attack test: an ordinary program whose
 * file is named like an interpreter (python3.12, python3.13, python3.9) and
 * that exports the symbols the profiler looks for (_PyRuntime, PyCode_Type,
 * PyUnicode_Type, _PyEval_EvalFrameDefault, Py_Version), with memory that
 * lies about the interpreter. argv[1] names the lie:
 *
 *   version   Py_Version says 3.11 in a file named python3.12
 *   back      the thread state points to another interpreter
 *   notstr    a code object's name is not a str
 *   offsets   3.13's _Py_DebugOffsets with offsets outside their structs
 *   old       an interpreter of 3.9 (not supported)
 *   frames    a layout that checks out, then frames that lie: a cycle in
 *             the frame chain, names of huge length, names with ';' and
 *             line breaks, a name that is not a str, a file name that is
 *             the path of a root-only file
 *
 * It then burns CPU in spin() (a tenth of a core) until killed. Every
 * offset is CPython 3.12's on x86-64 (the profiler's pyLayoutOf(12)). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef PYV
#define PYV 0x030c01f0
#endif

__attribute__((aligned(64))) unsigned char _PyRuntime[4096];
__attribute__((aligned(64))) unsigned char PyCode_Type[512];
__attribute__((aligned(64))) unsigned char PyUnicode_Type[512];
uint32_t Py_Version = PYV;

__attribute__((noinline)) int _PyEval_EvalFrameDefault(int x) { return x * 3 + 1; }

static __attribute__((aligned(64))) unsigned char interp[4096], tstate[4096], cframe[64];
static __attribute__((aligned(64))) unsigned char frames[4][128], codes[4][512];
static __attribute__((aligned(64))) unsigned char strs[8][256];
static __attribute__((aligned(64))) unsigned char huge[64 + (1 << 20)];
static const char *secret_path = "/nonexistent";

#define PTR(b, off) (*(uint64_t *)((unsigned char *)(b) + (off)))

/* str makes a compact ASCII str object of text at s (3.12: length at 16,
 * state at 32, data at 40). */
static void *str(unsigned char *s, const char *text, int is_str)
{
	PTR(s, 8) = (uint64_t)(is_str ? PyUnicode_Type : PyCode_Type);
	PTR(s, 16) = strlen(text);
	*(uint32_t *)(s + 32) = 1 << 2 | 1 << 5 | 1 << 6; /* kind 1, compact, ascii */
	strcpy((char *)s + 40, text);
	return s;
}

/* code makes a code object named name in file (3.12: co_file at 112,
 * co_name at 128, co_firstlineno at 68). */
static void *code(unsigned char *c, void *name, void *file, int line)
{
	PTR(c, 8) = (uint64_t)PyCode_Type;
	PTR(c, 112) = (uint64_t)file;
	PTR(c, 128) = (uint64_t)name;
	*(int32_t *)(c + 68) = line;
	return c;
}

__attribute__((noinline)) void spin(void)
{
	volatile unsigned long x = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &start);
	do {
		for (int i = 0; i < 100000; i++)
			x += _PyEval_EvalFrameDefault(i);
		clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now);
	} while ((now.tv_sec - start.tv_sec) * 1000000000L + now.tv_nsec - start.tv_nsec < 10000000L);
	usleep(90000);
}

int main(int argc, char **argv)
{
	const char *lie = argc > 1 ? argv[1] : "frames";
	if (argc > 2)
		secret_path = argv[2];
	void *file = str(strs[0], "/srv/app/PLANTED_FILE.py", 1);
	void *name = str(strs[1], "PLANTED_NAME", 1);
	code(codes[0], name, file, 7);
	PTR(frames[0], 0) = (uint64_t)codes[0]; /* f_code */
	PTR(frames[0], 8) = 0;                  /* previous */

	PTR(tstate, 16) = (uint64_t)interp;         /* interp */
	PTR(tstate, 136) = (uint64_t)pthread_self(); /* thread_id */
	PTR(tstate, 56) = (uint64_t)cframe;          /* cframe */
	PTR(cframe, 0) = (uint64_t)frames[0];        /* current_frame */
	PTR(interp, 72) = (uint64_t)tstate;          /* threads.head */

	if (!strcmp(lie, "back"))
		PTR(tstate, 16) = (uint64_t)tstate;
	if (!strcmp(lie, "notstr"))
		PTR(strs[1], 8) = (uint64_t)PyCode_Type;
	if (!strcmp(lie, "offsets")) {
		memcpy(_PyRuntime, "xdebugpy", 8);
		PTR(_PyRuntime, 8) = Py_Version;
		for (int at = 24; at < 584; at += 8)
			PTR(_PyRuntime, at) = 0xfffffff0;
	}
	/* Published last: the interpreter looks initialized from here on. */
	PTR(_PyRuntime, 40) = (uint64_t)interp;

	if (!strcmp(lie, "frames")) {
		/* Checked (the profiler names the interpreter once it saw a
		 * code object named by a str), then the lies. */
		sleep(3);
		void *semi = str(strs[2], "a;b\nc\rd\x01PLANTED", 1);
		void *wrong = str(strs[3], "NOTSTR", 0);
		void *secret = str(strs[4], secret_path, 1);
		/* A str whose length says 2^20 characters, its last bytes a
		 * marker; and one whose length says 2^40. */
		unsigned char *h = huge;
		PTR(h, 8) = (uint64_t)PyUnicode_Type;
		PTR(h, 16) = 1 << 20;
		*(uint32_t *)(h + 32) = 1 << 2 | 1 << 5 | 1 << 6;
		memset(h + 40, 'A', (1 << 20) - 8);
		memcpy(h + 40 + (1 << 20) - 8, "HUGETAIL", 8);
		void *endless = str(strs[5], "ENDLESS", 1);
		PTR(strs[5], 16) = 1ULL << 40;
		code(codes[1], semi, secret, 1);
		code(codes[2], wrong, h, -5);
		code(codes[3], endless, endless, 1 << 30);
		/* f_code, previous: 0 -> 1 -> 2 -> 3 -> 1 -> ... */
		for (int i = 0; i < 4; i++) {
			PTR(frames[i], 0) = (uint64_t)codes[i];
			PTR(frames[i], 8) = (uint64_t)frames[i == 3 ? 1 : i + 1];
		}
	}
	for (;;)
		spin();
}
