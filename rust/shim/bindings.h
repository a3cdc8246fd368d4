/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Input to bindgen for rust/dm/bindings_generated.rs. The RUST_CONST_HELPER_
 * definitions turn macros into constants bindgen can evaluate (the same trick
 * as the kernel's own rust/bindings/bindings_helper.h); they are never
 * compiled as C.
 */
#include <linux/bio.h>
#include <linux/blk_types.h>
#include <linux/blkdev.h>
#include <linux/delay.h>
#include <linux/device-mapper.h>

#include "helpers.h"

const gfp_t RUST_CONST_HELPER_GFP_NOIO = GFP_NOIO;
const gfp_t RUST_CONST_HELPER_GFP_NOWAIT = GFP_NOWAIT;
const blk_opf_t RUST_CONST_HELPER_REQ_FUA = REQ_FUA;
const blk_opf_t RUST_CONST_HELPER_REQ_PREFLUSH = REQ_PREFLUSH;
const blk_opf_t RUST_CONST_HELPER_REQ_POLLED = REQ_POLLED;
const blk_status_t RUST_CONST_HELPER_BLK_STS_OK = BLK_STS_OK;
const blk_status_t RUST_CONST_HELPER_BLK_STS_IOERR = BLK_STS_IOERR;
const blk_status_t RUST_CONST_HELPER_BLK_STS_NOTSUPP = BLK_STS_NOTSUPP;
const unsigned int RUST_CONST_HELPER_BIO_POOL_SIZE = BIO_POOL_SIZE;
const unsigned int RUST_CONST_HELPER_BIO_MAX_VECS = BIO_MAX_VECS;
