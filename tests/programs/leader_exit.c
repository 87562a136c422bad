/* The main thread leaves with pthread_exit; another thread ends the process 100 ms later
 * with exit(3). */
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
static void *later(void *arg)
{
	(void)arg;
	usleep(100000);
	exit(3);
}
int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, later, NULL);
	pthread_exit(NULL);
}
