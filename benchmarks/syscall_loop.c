/* The syscall-overhead workload: N bpf(BPF_MAP_LOOKUP_ELEM) calls on a key a
 * hash map does not hold (each fails with ENOENT, an error lstrace's
 * bpf_syscall probe counts), then N getppid() calls (a syscall lstrace does
 * not look at), then N lookups of a key it holds (bpf() calls that succeed:
 * the common case).  Prints ns per call of each loop.  C, not Python: the
 * interpreter's own ~0.5 us per call would bury the difference. */
#include <errno.h>
#include <linux/bpf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	union bpf_attr a;
	unsigned key = 1;
	unsigned long long value;

	memset(&a, 0, sizeof(a));
	a.map_type = BPF_MAP_TYPE_HASH;
	a.key_size = sizeof(key);
	a.value_size = sizeof(value);
	a.max_entries = 1;
	int fd = syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof(a));
	if (fd < 0) {
		perror("BPF_MAP_CREATE");
		return 1;
	}
	memset(&a, 0, sizeof(a));
	a.map_fd = fd;
	a.key = (unsigned long)&key;
	a.value = (unsigned long)&value;

	double t0 = now_ns();
	for (long i = 0; i < n; i++)
		if (syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &a, sizeof(a)) != -1 || errno != ENOENT) {
			fprintf(stderr, "lookup did not fail with ENOENT\n");
			return 1;
		}
	double t1 = now_ns();
	for (long i = 0; i < n; i++)
		syscall(SYS_getppid);
	double t2 = now_ns();
	value = 7;
	a.flags = BPF_ANY;
	if (syscall(SYS_bpf, BPF_MAP_UPDATE_ELEM, &a, sizeof(a))) {
		perror("BPF_MAP_UPDATE_ELEM");
		return 1;
	}
	for (long i = 0; i < n; i++)
		if (syscall(SYS_bpf, BPF_MAP_LOOKUP_ELEM, &a, sizeof(a))) {
			fprintf(stderr, "lookup of a present key failed\n");
			return 1;
		}
	double t3 = now_ns();
	printf("%.3f %.3f %.3f\n", (t1 - t0) / n, (t2 - t1) / n, (t3 - t2) / n);
	return 0;
}
