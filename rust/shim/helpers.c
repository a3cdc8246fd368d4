// SPDX-License-Identifier: GPL-2.0
/*
 * dm-fracture C shim, see helpers.h.
 */
#include <linux/module.h>
#include <linux/printk.h>
#include <linux/slab.h>

#include "helpers.h"

/*
 * Print one line as "device-mapper: fracture: <msg>", like DMERR() and
 * friends do in C targets. @msg need not be NUL terminated.
 */
void fracture_log(int level, const char *msg, size_t len)
{
	int n = len > INT_MAX ? INT_MAX : (int)len;

	switch (level) {
	case 3:
		pr_err("device-mapper: fracture: %.*s\n", n, msg);
		break;
	case 4:
		pr_warn("device-mapper: fracture: %.*s\n", n, msg);
		break;
	default:
		pr_info("device-mapper: fracture: %.*s\n", n, msg);
		break;
	}
}

unsigned int fracture_bio_op(const struct bio *bio)
{
	return bio_op(bio);
}

void fracture_bio_set_dev(struct bio *bio, struct block_device *bdev)
{
	bio_set_dev(bio, bdev);
}

dev_t fracture_bdev_dev(const struct block_device *bdev)
{
	return bdev->bd_dev;
}

sector_t fracture_bdev_nr_sectors(struct block_device *bdev)
{
	return bdev_nr_sectors(bdev);
}

unsigned int fracture_bdev_max_discard_sectors(struct block_device *bdev)
{
	return bdev_max_discard_sectors(bdev);
}

/*
 * A bio_set on the heap, so that Rust code does not need to know its layout.
 * Returns NULL on failure. May sleep.
 */
struct bio_set *fracture_bioset_alloc(unsigned int pool_size, unsigned int front_pad)
{
	struct bio_set *bs = kzalloc(sizeof(*bs), GFP_KERNEL);

	if (!bs)
		return NULL;
	if (bioset_init(bs, pool_size, front_pad, 0)) {
		kfree(bs);
		return NULL;
	}
	return bs;
}

void fracture_bioset_free(struct bio_set *bs)
{
	if (!bs)
		return;
	bioset_exit(bs);
	kfree(bs);
}

void fracture_ti_set_flags(struct dm_target *ti, bool flush_supported,
			   bool discards_supported)
{
	ti->flush_supported = flush_supported;
	ti->discards_supported = discards_supported;
}
