// SPDX-License-Identifier: GPL-2.0
/* Stand-in for nvidia-peermem.ko. */
#include <linux/module.h>

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
MODULE_DESCRIPTION("bee test stand-in for nvidia-peermem, built from " BEE_FAKE_SOURCE_DIR);
