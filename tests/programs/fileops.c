/* File events fixture: in directory argv[1], one of each file operation, in order:
 * create+write+close "a", rename "a" -> "b", chmod "b", unlink "b", mkdir "d", rmdir "d";
 * then, with FILEOPS_WAIT set, waits for stdin to close (so it is still there to be named).
 * With argv[2] = N instead: creates (and closes) N empty files "fN" as fast as it can. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

int main(int argc, char **argv) {
    if (argc < 2 || chdir(argv[1]) != 0) die("chdir");
    if (argc > 2) {
        long n = atol(argv[2]);
        char name[32];
        for (long i = 0; i < n; i++) {
            snprintf(name, sizeof name, "f%ld", i);
            int fd = open(name, O_CREAT | O_WRONLY, 0644);
            if (fd < 0) die("open");
            close(fd);
        }
        return 0;
    }
    int fd = open("a", O_CREAT | O_WRONLY | O_TRUNC, 0644);
    if (fd < 0) die("open a");
    if (write(fd, "hello\n", 6) != 6) die("write");
    if (close(fd) != 0) die("close");
    if (rename("a", "b") != 0) die("rename");
    if (chmod("b", 0600) != 0) die("chmod");
    if (unlink("b") != 0) die("unlink");
    if (mkdir("d", 0755) != 0) die("mkdir");
    if (rmdir("d") != 0) die("rmdir");
    if (getenv("FILEOPS_WAIT")) {
        char c;
        while (read(0, &c, 1) > 0) {}
    }
    return 0;
}
