/* PTRACE_ATTACH to argv[1], wait for the stop, detach. Exit 0 on success. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pid_t pid = atoi(argv[1]);
	if (ptrace(PTRACE_ATTACH, pid, 0, 0)) {
		perror("ptrace");
		return 1;
	}
	int st;
	waitpid(pid, &st, 0);
	ptrace(PTRACE_DETACH, pid, 0, 0);
	return 0;
}
