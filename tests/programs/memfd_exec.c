/* Copies argv[1] into a memfd and runs it with fexecve (argv[1..] as its argv): a program
 * that never exists as a file on any filesystem. CUSTOS_PAD_MB=N appends N MiB of zeros
 * (the ELF loader ignores them; hashing them takes a while). CUSTOS_SEAL=1 seals the memfd
 * against writes before running it. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <stdlib.h>
#include <unistd.h>
extern char **environ;
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	int in = open(argv[1], O_RDONLY);
	int seal = getenv("CUSTOS_SEAL") != NULL;
	int fd = memfd_create("custos-test", MFD_CLOEXEC | (seal ? MFD_ALLOW_SEALING : 0));
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
	const char *pad = getenv("CUSTOS_PAD_MB");
	if (pad) {
		off_t end = lseek(fd, 0, SEEK_END);
		if (ftruncate(fd, end + (off_t)atol(pad) * 1048576))
			return 2;
	}
	if (seal && fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL)) {
		perror("F_ADD_SEALS");
		return 2;
	}
	fexecve(fd, argv + 1, environ);
	perror("fexecve");
	return 3;
}
