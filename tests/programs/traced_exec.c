/* Runs argv[1..] as a ptrace tracee (PTRACE_TRACEME, as a debugger would), passing every
 * signal through. Exits with the tracee's exit code, or 128 + the signal that killed it. */
#include <signal.h>
#include <stdio.h>
#include <sys/ptrace.h>
#include <sys/wait.h>
#include <unistd.h>
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	pid_t child = fork();
	if (child == 0) {
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		execv(argv[1], argv + 1);
		_exit(127);
	}
	for (;;) {
		int st;
		if (waitpid(child, &st, 0) < 0)
			return 3;
		if (WIFEXITED(st))
			return WEXITSTATUS(st);
		if (WIFSIGNALED(st))
			return 128 + WTERMSIG(st);
		/* Stopped: the exec trap (SIGTRAP) is swallowed, other signals pass through. */
		int sig = WSTOPSIG(st) == SIGTRAP ? 0 : WSTOPSIG(st);
		ptrace(PTRACE_CONT, child, 0, sig);
	}
}
