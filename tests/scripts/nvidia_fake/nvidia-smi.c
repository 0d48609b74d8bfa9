/* Stand-in for nvidia-smi: a glibc program that, like NVIDIA's, needs libdl and opens libnvidia-ml.so.1. */
#include <dlfcn.h>
#include <stdio.h>

int main(void)
{
	void *ml = dlopen("libnvidia-ml.so.1", RTLD_NOW);

	printf("NVIDIA-SMI stand-in: libnvidia-ml %s\n", ml ? "loaded" : "missing");
	return ml ? 0 : 9;
}
