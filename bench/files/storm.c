/* The open/close storm of bench/files.sh, compiled there with cc.
 *
 *   storm DIR N PASSES r|w     open (O_RDONLY or O_WRONLY) and close DIR/f0000000 .. N-1, one
 *                              untimed-for-the-headline "cold" pass, then PASSES timed passes
 *   storm DIR N 0 c            create the N empty files (mode 0644), once, before any agent runs
 *
 * Prints one line: pid cold_s timed_s cpu_s failed first_errno
 *   cold_s   the first pass (for custos's access rules: the pass whose decisions are not cached)
 *   timed_s  the PASSES passes after it, wall time (CLOCK_MONOTONIC)
 *   cpu_s    this process's user + system CPU time over the timed passes
 *   failed   opens that failed (any pass); first_errno the errno of the first one (0: none)
 * Exits 1 if an open failed. No allocation, stdio or syscall other than openat/close inside the
 * timed loop. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
           (double)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

static long failed;
static int first_errno;

static void pass(int dir, char (*names)[16], long n, int flags) {
    for (long i = 0; i < n; i++) {
        int fd = openat(dir, names[i], flags, 0644);
        if (fd < 0) {
            if (!failed++) first_errno = errno;
            continue;
        }
        close(fd);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s DIR N PASSES r|w|c\n", argv[0]);
        return 2;
    }
    long n = strtol(argv[2], NULL, 10), passes = strtol(argv[3], NULL, 10);
    char mode = argv[4][0];
    int flags = mode == 'r' ? O_RDONLY : mode == 'w' ? O_WRONLY : O_WRONLY | O_CREAT | O_EXCL;
    if (n <= 0 || n > 10000000 || passes < 0 || !strchr("rwc", mode) || argv[4][1]) {
        fprintf(stderr, "storm: bad arguments\n");
        return 2;
    }
    int dir = open(argv[1], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0) {
        perror(argv[1]);
        return 2;
    }
    char (*names)[16] = calloc((size_t)n, sizeof *names);
    if (!names) return 2;
    for (long i = 0; i < n; i++) snprintf(names[i], sizeof names[i], "f%07ld", i);

    double t0 = now();
    pass(dir, names, n, flags | O_CLOEXEC);
    double t1 = now(), c1 = cpu();
    for (long p = 0; p < passes; p++) pass(dir, names, n, flags | O_CLOEXEC);
    double t2 = now(), c2 = cpu();

    printf("%d %.6f %.6f %.6f %ld %d\n", (int)getpid(), t1 - t0, t2 - t1, c2 - c1, failed,
           first_errno);
    return failed != 0;
}
