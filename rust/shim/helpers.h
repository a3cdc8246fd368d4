/* SPDX-License-Identifier: GPL-2.0 */
/*
 * dm-fracture C shim: exported wrappers for the few kernel macros and static
 * inline functions the Rust abstraction layer (rust/dm/) needs, and a copy
 * of dm-bio-record.h's two helpers. Nothing else lives here.
 */
#ifndef DM_FRACTURE_HELPERS_H
#define DM_FRACTURE_HELPERS_H

#include <linux/bio.h>
#include <linux/blkdev.h>
#include <linux/device-mapper.h>
#include <linux/dm-io.h>
#include <linux/dm-kcopyd.h>
#include <linux/completion.h>
#include <linux/mempool.h>
#include <linux/sched.h>
#include <linux/timer.h>

void fracture_log(int level, const char *msg, size_t len);

unsigned int fracture_bio_op(const struct bio *bio);
void fracture_bio_set_dev(struct bio *bio, struct block_device *bdev);

/*
 * What the block layer below may change in a remapped bio, saved so that it
 * can be sent again: dm_bio_record()/dm_bio_restore() of
 * drivers/md/dm-bio-record.h, which is not under include/ (an out-of-tree
 * module cannot include it). The integrity pointer is kept in every
 * configuration so that the layout does not depend on it.
 */
struct fracture_bio_details {
	struct block_device *bi_bdev;
	int bi_remaining;
	unsigned long bi_flags;
	struct bvec_iter bi_iter;
	bio_end_io_t *bi_end_io;
	struct bio_integrity_payload *bi_integrity;
};

void fracture_bio_record(struct fracture_bio_details *bd, const struct bio *bio);
void fracture_bio_restore(const struct fracture_bio_details *bd, struct bio *bio);

dev_t fracture_bdev_dev(const struct block_device *bdev);
sector_t fracture_bdev_nr_sectors(struct block_device *bdev);
unsigned int fracture_bdev_max_discard_sectors(struct block_device *bdev);

struct bio_set *fracture_bioset_alloc(unsigned int pool_size, unsigned int front_pad,
				      bool need_bvecs);
void fracture_bioset_free(struct bio_set *bs);

void fracture_table_event(struct dm_target *ti);

struct task_struct *fracture_kthread_start(int (*fn)(void *), void *data, const char *name);
void fracture_kthread_stop(struct task_struct *task);
bool fracture_kthread_should_stop(void);
void fracture_rcu_read_lock(void);
void fracture_rcu_read_unlock(void);
void fracture_synchronize_rcu(void);
void fracture_prepare_sleep(void);
void fracture_finish_sleep(void);
long fracture_sleep(long timeout);
long fracture_max_schedule_timeout(void);
void fracture_cond_resched(void);
unsigned long fracture_msecs_to_jiffies(unsigned int ms);
unsigned long fracture_jiffies(void);

struct dm_io_client *fracture_dm_io_client_create(void);
int fracture_dm_io_sync(struct dm_io_client *client, struct block_device *bdev,
			sector_t sector, unsigned int sectors, void *buf, bool write,
			bool fua, bool preflush);
void fracture_random(void *buf, size_t len);
u64 fracture_totalram_bytes(void);

u64 fracture_now_ns(void);
struct dm_kcopyd_client *fracture_kcopyd_create(void);
void fracture_kcopyd_copy(struct dm_kcopyd_client *kc, struct block_device *from,
			  sector_t sector, sector_t count, unsigned int ndests,
			  struct block_device **dests,
			  void (*fn)(int read_err, unsigned long write_err, void *context),
			  void *context);

mempool_t *fracture_page_pool_create(int min_nr);
struct page *fracture_page_pool_alloc(mempool_t *pool);
void fracture_bio_free_pages(struct bio *bio, mempool_t *pool);
void fracture_timer_setup(struct timer_list *timer, void (*fn)(struct timer_list *));
void fracture_timer_arm(struct timer_list *timer, unsigned int ms);
void fracture_init_completion(struct completion *c);

#endif
