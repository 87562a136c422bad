/* dlopen(argv[1]) and exit 0 if it loaded. */
#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv)
{
	if (argc < 2)
		return 2;
	if (!dlopen(argv[1], RTLD_NOW)) {
		fprintf(stderr, "%s\n", dlerror());
		return 1;
	}
	return 0;
}
