// SPDX-License-Identifier: GPL-2.0
/* Stand-in for nvidia.ko: exports a symbol nvidia-modeset uses, so the dependency is real. */
#include <linux/module.h>

int bee_fake_nvidia_ready(void)
{
	return 1;
}
EXPORT_SYMBOL_GPL(bee_fake_nvidia_ready);

static int __init bee_fake_init(void)
{
	return 0;
}

static void __exit bee_fake_exit(void)
{
}

module_init(bee_fake_init);
module_exit(bee_fake_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bee test stand-in for nvidia, built from " BEE_FAKE_SOURCE_DIR);
