/* Forks; the parent writes 7 into the child's copy of a variable with process_vm_writev,
 * which makes the child exit 0. Prints the child's pid; exits with the child's status. */
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>
static volatile long cell = 1;
int main(void)
{
	pid_t child = fork();
	if (child == 0) {
		for (int i = 0; i < 5000 && cell == 1; i++)
			usleep(1000);
		_exit(cell == 7 ? 0 : 1);
	}
	printf("%d\n", child);
	fflush(stdout);
	long seven = 7;
	struct iovec local = {&seven, sizeof(seven)}, remote = {(void *)&cell, sizeof(cell)};
	if (process_vm_writev(child, &local, 1, &remote, 1, 0) != sizeof(seven)) {
		perror("process_vm_writev");
		return 1;
	}
	int st;
	waitpid(child, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
