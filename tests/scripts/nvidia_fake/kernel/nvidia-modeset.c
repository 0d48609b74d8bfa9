// SPDX-License-Identifier: GPL-2.0
/* Stand-in for nvidia-modeset.ko: depends on nvidia.ko like the real one. */
#include <linux/module.h>

int bee_fake_nvidia_ready(void);

static int __init bee_fake_init(void)
{
	return bee_fake_nvidia_ready() ? 0 : -ENODEV;
}

static void __exit bee_fake_exit(void)
{
}

module_init(bee_fake_init);
module_exit(bee_fake_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bee test stand-in for nvidia-modeset, built from " BEE_FAKE_SOURCE_DIR);
