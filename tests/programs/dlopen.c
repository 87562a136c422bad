/* dlopen(argv[1]) and exit 0 if it loaded. With argv[2], also call that symbol (an int
 * function without arguments) and print what it returns. */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	if (argc > 2) {
		int (*f)(void) = (int (*)(void))dlsym(h, argv[2]);
		if (!f) {
			fprintf(stderr, "%s\n", dlerror());
			return 3;
		}
		printf("%d\n", f());
	}
	return 0;
}
