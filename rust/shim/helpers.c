// SPDX-License-Identifier: GPL-2.0
/*
 * dm-fracture C shim, see helpers.h.
 */
#include <linux/dm-kcopyd.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/random.h>
#include <linux/rcupdate.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/timekeeping.h>

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

void fracture_bio_record(struct fracture_bio_details *bd, const struct bio *bio)
{
	bd->bi_bdev = bio->bi_bdev;
	bd->bi_flags = bio->bi_flags;
	bd->bi_iter = bio->bi_iter;
	bd->bi_remaining = atomic_read(&bio->__bi_remaining);
	bd->bi_end_io = bio->bi_end_io;
#if defined(CONFIG_BLK_DEV_INTEGRITY)
	bd->bi_integrity = bio->bi_integrity;
#else
	bd->bi_integrity = NULL;
#endif
}

void fracture_bio_restore(const struct fracture_bio_details *bd, struct bio *bio)
{
	bio->bi_bdev = bd->bi_bdev;
	bio->bi_flags = bd->bi_flags;
	bio->bi_iter = bd->bi_iter;
	atomic_set(&bio->__bi_remaining, bd->bi_remaining);
	bio->bi_end_io = bd->bi_end_io;
#if defined(CONFIG_BLK_DEV_INTEGRITY)
	bio->bi_integrity = bd->bi_integrity;
#endif
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
 * A bio_set on the heap (with a bvec pool if @need_bvecs), so that Rust code does not need to know its layout.
 * Returns NULL on failure. May sleep.
 */
struct bio_set *fracture_bioset_alloc(unsigned int pool_size, unsigned int front_pad,
				      bool need_bvecs)
{
	struct bio_set *bs = kzalloc(sizeof(*bs), GFP_KERNEL);

	if (!bs)
		return NULL;
	if (bioset_init(bs, pool_size, front_pad, need_bvecs ? BIOSET_NEED_BVECS : 0)) {
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

/* Raise a dm event (`dmsetup wait` returns). Sleeps: process context only. */
void fracture_table_event(struct dm_target *ti)
{
	dm_table_event(ti->table);
}

/*
 * Start a kernel thread running fn(data), holding a reference on its task
 * so that fracture_kthread_stop() is safe even if fn has returned.
 * Returns NULL on failure.
 */
struct task_struct *fracture_kthread_start(int (*fn)(void *), void *data, const char *name)
{
	struct task_struct *task = kthread_create(fn, data, "%s", name);

	if (IS_ERR(task))
		return NULL;
	get_task_struct(task);
	wake_up_process(task);
	return task;
}

/* Make kthread_should_stop() true, wait for the thread to exit, drop it. */
void fracture_kthread_stop(struct task_struct *task)
{
	kthread_stop(task);
	put_task_struct(task);
}

bool fracture_kthread_should_stop(void)
{
	return kthread_should_stop();
}

/* Any context; static inlines in C, hence these. */
void fracture_rcu_read_lock(void)
{
	rcu_read_lock();
}

void fracture_rcu_read_unlock(void)
{
	rcu_read_unlock();
}

/* Sleeps until every RCU read-side section begun before it has ended. */
void fracture_synchronize_rcu(void)
{
	synchronize_rcu();
}

/* Announce a sleep: the caller then rechecks its condition and sleeps. */
void fracture_prepare_sleep(void)
{
	set_current_state(TASK_IDLE);
}

void fracture_finish_sleep(void)
{
	__set_current_state(TASK_RUNNING);
}

long fracture_sleep(long timeout)
{
	return schedule_timeout(timeout);
}

void fracture_cond_resched(void)
{
	cond_resched();
}

long fracture_max_schedule_timeout(void)
{
	return MAX_SCHEDULE_TIMEOUT;
}

unsigned long fracture_msecs_to_jiffies(unsigned int ms)
{
	return msecs_to_jiffies(ms);
}

/* jiffies is a volatile global (and jiffies_64 on 32-bit): read it here. */
unsigned long fracture_jiffies(void)
{
	return jiffies;
}

struct dm_io_client *fracture_dm_io_client_create(void)
{
	struct dm_io_client *client = dm_io_client_create();

	return IS_ERR(client) ? NULL : client;
}

/*
 * Synchronous metadata I/O of @sectors sectors at @sector through dm-io,
 * from/to @buf: kmalloc'ed, or vmalloc'ed (kvmalloc falls back to it for a
 * large buffer). Writes carry REQ_FUA when @fua, and REQ_PREFLUSH when
 * @preflush (every write completed before is durable before this one).
 * Sleeps.
 */
int fracture_dm_io_sync(struct dm_io_client *client, struct block_device *bdev,
			sector_t sector, unsigned int sectors, void *buf, bool write,
			bool fua, bool preflush)
{
	struct dm_io_region where = {
		.bdev = bdev,
		.sector = sector,
		.count = sectors,
	};
	struct dm_io_request req = {
		.bi_opf = write ? REQ_OP_WRITE | REQ_SYNC | REQ_META | (fua ? REQ_FUA : 0) |
					  (preflush ? REQ_PREFLUSH : 0) :
				  REQ_OP_READ | REQ_META,
		.notify.fn = NULL,
		.client = client,
	};
	unsigned long error_bits = 0;
	int r;

	if (is_vmalloc_addr(buf)) {
		req.mem.type = DM_IO_VMA;
		req.mem.ptr.vma = buf;
	} else {
		req.mem.type = DM_IO_KMEM;
		req.mem.ptr.addr = buf;
	}
	r = dm_io(&req, 1, &where, &error_bits, IOPRIO_DEFAULT);
	if (r)
		return r;
	return error_bits ? -EIO : 0;
}

void fracture_random(void *buf, size_t len)
{
	get_random_bytes(buf, len);
}

struct dm_kcopyd_client *fracture_kcopyd_create(void)
{
	struct dm_kcopyd_client *kc = dm_kcopyd_client_create(NULL);

	return IS_ERR(kc) ? NULL : kc;
}

/*
 * Copy @count sectors at @sector of @from to the same sector of each of the
 * @ndests (1..DM_KCOPYD_MAX_REGIONS) devices in @dests; @fn(@context) runs
 * in kcopyd's worker when done.
 */
void fracture_kcopyd_copy(struct dm_kcopyd_client *kc, struct block_device *from,
			  sector_t sector, sector_t count, unsigned int ndests,
			  struct block_device **dests,
			  void (*fn)(int read_err, unsigned long write_err, void *context),
			  void *context)
{
	struct dm_io_region src = { .bdev = from, .sector = sector, .count = count };
	struct dm_io_region dst[DM_KCOPYD_MAX_REGIONS];
	unsigned int i;

	if (WARN_ON_ONCE(ndests == 0 || ndests > DM_KCOPYD_MAX_REGIONS))
		ndests = ndests ? DM_KCOPYD_MAX_REGIONS : 1;
	for (i = 0; i < ndests; i++) {
		dst[i].bdev = dests[i];
		dst[i].sector = sector;
		dst[i].count = count;
	}
	dm_kcopyd_copy(kc, &src, ndests, dst, 0, fn, context);
}

u64 fracture_now_ns(void)
{
	return ktime_get_ns();
}

/* A mempool of order-0 pages (mempool_create_page_pool is a macro). */
mempool_t *fracture_page_pool_create(int min_nr)
{
	return mempool_create_page_pool(min_nr, 0);
}

/*
 * mempool_alloc is a macro (allocation profiling). Never sleeps: NULL when
 * neither the page allocator nor the pool's reserve has a page.
 */
struct page *fracture_page_pool_alloc(mempool_t *pool)
{
	return mempool_alloc(pool, GFP_NOWAIT);
}

/*
 * Give every page of @bio back to @pool (bio_for_each_segment_all is a
 * macro). The pages were added one by one from @pool. Any context.
 */
void fracture_bio_free_pages(struct bio *bio, mempool_t *pool)
{
	struct bio_vec *bv;
	struct bvec_iter_all iter;

	bio_for_each_segment_all(bv, bio, iter)
		mempool_free(bv->bv_page, pool);
}

/* timer_setup is a macro (it gives lockdep a key per call site). */
void fracture_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *))
{
	timer_setup(timer, fn, 0);
}

/* Fire @timer @ms milliseconds from now (jiffies is not for Rust). */
void fracture_timer_arm(struct timer_list *timer, unsigned int ms)
{
	mod_timer(timer, jiffies + msecs_to_jiffies(ms));
}

/* init_completion is a static inline. */
void fracture_init_completion(struct completion *c)
{
	init_completion(c);
}

/* The memory the page allocator manages, in bytes. */
u64 fracture_totalram_bytes(void)
{
	return (u64)totalram_pages() << PAGE_SHIFT;
}
