/* Copies argv[1] into a memfd and runs it with fexecve (argv[1..] as its argv): a program
 * that never exists as a file on any filesystem. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int in = open(argv[1], O_RDONLY);
	int fd = memfd_create("custos-test", MFD_CLOEXEC);
	if (in < 0 || fd < 0) {
		perror("open");
		return 2;
	}
	char buf[65536];
	ssize_t n;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			return 2;
	close(in);
	fexecve(fd, argv + 1, environ);
	perror("fexecve");
	return 3;
}
