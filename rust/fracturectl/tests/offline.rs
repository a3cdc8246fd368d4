// SPDX-License-Identifier: GPL-2.0

//! Host tests of the offline commands (`format`, `dump`, `check`,
//! `repair`) on image files: the built binary is run in a temporary
//! directory of its own per test.
//!
//! Golden outputs live in `tests/golden/`; `UPDATE_GOLDEN=1 cargo test`
//! rewrites them from the current output (check the diff by eye).

use fracture_core::format::{seal, BlockType, BITS_PER_BLOCK, BLOCK_SIZE, HEADER_SIZE};
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_fracturectl");
const UUID: &str = "01234567-89ab-cdef-0123-456789abcdef";

// Superblock field offsets (Documentation/admin-guide/device-mapper/dm-fracture.rst).
const SB_NR_REGIONS: usize = 56;
const SB_NR_LEGS: usize = 72;

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("fracturectl-test-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Runs the tool in this directory.
    fn run(&self, args: &[&str]) -> Out {
        let o = Command::new(BIN)
            .args(args)
            .current_dir(&self.0)
            .output()
            .unwrap();
        Out::from(o)
    }

    /// An all-zero image file of `bytes`.
    fn image(&self, name: &str, bytes: u64) {
        let f = fs::File::create(self.path(name)).unwrap();
        f.set_len(bytes).unwrap();
    }

    /// `format` with the fixed UUID; asserts it worked.
    fn format(&self, name: &str, args: &[&str]) {
        let mut a = vec!["format", name, "--uuid", UUID];
        a.extend_from_slice(args);
        let o = self.run(&a);
        assert_eq!(o.code, 0, "format failed: {o:?}");
    }

    fn block(&self, name: &str, nr: u64) -> Vec<u8> {
        let data = fs::read(self.path(name)).unwrap();
        let off = nr as usize * BLOCK_SIZE;
        data[off..off + BLOCK_SIZE].to_vec()
    }

    fn put_block(&self, name: &str, nr: u64, b: &[u8]) {
        let mut data = fs::read(self.path(name)).unwrap();
        let off = nr as usize * BLOCK_SIZE;
        data[off..off + BLOCK_SIZE].copy_from_slice(b);
        fs::write(self.path(name), data).unwrap();
    }

    /// Changes block `nr` with `f`, then reseals it (a valid checksum).
    fn edit_sealed(&self, name: &str, nr: u64, kind: BlockType, f: impl FnOnce(&mut [u8])) {
        let mut b = self.block(name, nr);
        f(&mut b);
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&b[16..32]);
        seal(&mut b, kind, nr, &uuid);
        self.put_block(name, nr, &b);
    }

    /// Flips one byte of block `nr` (checksum left stale).
    fn flip(&self, name: &str, nr: u64, offset: usize) {
        let mut b = self.block(name, nr);
        b[offset] ^= 0x5a;
        self.put_block(name, nr, &b);
    }

    fn dump_json(&self, name: &str) -> Value {
        let o = self.run(&["dump", name, "--json"]);
        assert_eq!(o.code, 0, "{o:?}");
        serde_json::from_str(&o.stdout).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Out {
    fn from(o: Output) -> Self {
        Self {
            code: o.status.code().expect("killed by a signal"),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }
}

/// Sets bit `bit` of the payload of `b`.
fn set_payload_bit(b: &mut [u8], bit: u64) {
    b[HEADER_SIZE + (bit / 8) as usize] |= 1 << (bit % 8);
}

fn golden(name: &str, actual: &str) {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, actual).unwrap();
    }
    let want = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    assert_eq!(actual, want, "output differs from {}", p.display());
}

/// 3 legs, 51200 regions of 4K: 2 blocks per bitmap, 9 blocks in all.
/// Leg l's blocks are 1+2l and 2+2l; the intent log's 7 and 8.
const BIG: [&str; 6] = ["--legs", "3", "--size", "200M", "--region-size", "4K"];
const NR_REGIONS: u64 = 51200;

#[test]
fn format_check_dump_golden() {
    let t = TempDir::new("golden");
    t.image("m.img", 64 << 10);
    let o = t.run(&[
        "format", "m.img", "--uuid", UUID, BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5],
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("formatted m.img") && o.stdout.contains(UUID),
        "{o:?}"
    );
    assert_eq!(o.stdout.lines().count(), 1);

    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    golden("check_initial.txt", &o.stdout);
    assert_eq!(o.stderr, "");
    let o = t.run(&["check", "-q", "m.img"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{o:?}");

    let o = t.run(&["dump", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    golden("dump_initial.txt", &o.stdout);
}

#[test]
fn dump_json_fields() {
    let t = TempDir::new("json");
    t.image("m.img", 64 << 10);
    t.format("m.img", &BIG);
    let j = t.dump_json("m.img");
    assert_eq!(j["version"], 1);
    assert_eq!(j["device"]["name"], "m.img");
    assert_eq!(j["device"]["bytes"], 64 << 10);
    assert_eq!(j["device"]["needed_bytes"], 9 * 4096);
    let sb = &j["superblock"];
    assert_eq!(sb["uuid"], UUID);
    assert_eq!(sb["format_version"], 1);
    assert_eq!(sb["clean"], true);
    assert_eq!(sb["flags"], 1);
    assert_eq!(sb["region_sectors"], 8);
    assert_eq!(sb["nr_regions"], NR_REGIONS);
    assert_eq!(sb["target_sectors"], 409600);
    assert_eq!(sb["nr_legs"], 3);
    assert_eq!(sb["primary_leg"], 0);
    assert_eq!(sb["event"], 1);
    assert_eq!(sb["commit"], 0);
    assert_eq!(sb["bitmap_blocks"], 2);
    assert_eq!(sb["total_blocks"], 9);
    let legs = j["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 3);
    assert_eq!(legs[0]["state"], "in-sync");
    assert_eq!(legs[0]["primary"], true);
    assert_eq!(legs[0]["generation"], 1);
    assert_eq!(legs[0]["dirty_regions"], 0);
    assert_eq!(legs[0]["ranges"], serde_json::json!([]));
    for l in &legs[1..] {
        assert_eq!(l["state"], "recovering");
        assert_eq!(l["generation"], 0);
        assert_eq!(l["split"], false);
        assert_eq!(l["primary"], false);
        assert_eq!(l["dirty_regions"], NR_REGIONS);
        assert_eq!(l["ranges"], serde_json::json!([[0, NR_REGIONS - 1]]));
        assert_eq!(l["damaged_blocks"], serde_json::json!([]));
    }
    assert_eq!(j["intent"]["dirty_regions"], 0);

    // --nosync: every leg in sync, nothing dirty.
    t.format(
        "m.img",
        &["--force", "--nosync", "--legs", "2", "--size", "64M"],
    );
    let j = t.dump_json("m.img");
    assert_eq!(j["superblock"]["nr_regions"], 128);
    assert_eq!(j["superblock"]["region_sectors"], 1024);
    for l in j["legs"].as_array().unwrap() {
        assert_eq!(l["state"], "in-sync");
        assert_eq!(l["dirty_regions"], 0);
    }
}

/// Ranges, the 64-range cap, a damaged block, and the notes of check.
#[test]
fn dump_ranges_golden() {
    let t = TempDir::new("ranges");
    t.image("m.img", 36 << 10);
    t.format(
        "m.img",
        &["--nosync", BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5]],
    );
    // Leg 1: 0-99,200,305-310 and one bit in its second block.
    t.edit_sealed("m.img", 3, BlockType::FractureBitmap, |b| {
        for r in (0..100).chain([200]).chain(305..311) {
            set_payload_bit(b, r);
        }
    });
    t.edit_sealed("m.img", 4, BlockType::FractureBitmap, |b| {
        set_payload_bit(b, 7)
    });
    // Leg 2: 150 one-region ranges; its second block damaged.
    t.edit_sealed("m.img", 5, BlockType::FractureBitmap, |b| {
        for r in (0..300).step_by(2) {
            set_payload_bit(b, r);
        }
    });
    t.flip("m.img", 6, 1000);
    // Intent log: region 40000 (second block).
    t.edit_sealed("m.img", 8, BlockType::IntentBitmap, |b| {
        set_payload_bit(b, 40000 - BITS_PER_BLOCK)
    });
    let o = t.run(&["dump", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("0-99,200,305-310,32519\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("... (86 more ranges)"), "{}", o.stdout);
    golden("dump_ranges.txt", &o.stdout);

    let j = t.dump_json("m.img");
    assert_eq!(j["legs"][1]["dirty_regions"], 108);
    assert_eq!(
        j["legs"][1]["ranges"],
        serde_json::json!([[0, 99], [200, 200], [305, 310], [32519, 32519]])
    );
    assert_eq!(j["legs"][2]["ranges"].as_array().unwrap().len(), 150);
    let bad = &j["legs"][2]["damaged_blocks"][0];
    assert_eq!(bad["block"], 6);
    assert_eq!(bad["index"], 1);
    assert_eq!(bad["first_region"], BITS_PER_BLOCK);
    assert_eq!(bad["last_region"], NR_REGIONS - 1);
    assert!(bad["error"].as_str().unwrap().contains("checksum"));
    assert_eq!(j["intent"]["ranges"], serde_json::json!([[40000, 40000]]));

    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    golden("check_ranges.txt", &o.stdout);
    assert_eq!(o.stderr, "fracturectl: 1 problem found in m.img\n", "{o:?}");
}

/// Bits of an in-sync leg, of the primary, or in the intent log are notes,
/// not problems.
#[test]
fn notes_do_not_fail_check() {
    let t = TempDir::new("notes");
    t.image("m.img", 16 << 10);
    t.format("m.img", &["--nosync", "--legs", "2", "--size", "64M"]);
    t.edit_sealed("m.img", 1, BlockType::FractureBitmap, |b| {
        for r in [3, 4, 90] {
            set_payload_bit(b, r);
        }
    });
    t.edit_sealed("m.img", 3, BlockType::IntentBitmap, |b| {
        set_payload_bit(b, 5)
    });
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(
            "note: primary leg 0 has 3 regions dirty: activation will hand over to leg 1"
        ),
        "{o:?}"
    );
    assert!(
        o.stdout
            .contains("note: the write-intent log has 1 region set"),
        "{o:?}"
    );
    assert!(o.stdout.contains("m.img: clean:"), "{o:?}");
    let o = t.run(&["check", "-q", "m.img"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{o:?}");

    // Both legs dirty: the primary stays, a secondary in sync is fractured.
    t.edit_sealed("m.img", 2, BlockType::FractureBitmap, |b| {
        set_payload_bit(b, 1)
    });
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("note: primary leg 0 has 3 regions dirty and no other leg can serve"),
        "{o:?}"
    );
}

#[test]
fn format_refusals() {
    let t = TempDir::new("refusals");
    // A byte past the layout (4 blocks here) does not matter.
    t.image("out.img", 64 << 10);
    let mut data = fs::read(t.path("out.img")).unwrap();
    data[6 * BLOCK_SIZE + 17] = 1;
    fs::write(t.path("out.img"), &data).unwrap();
    let o = t.run(&["format", "out.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 0, "{o:?}");
    // Not all zero: one byte in block 2.
    t.image("m.img", 64 << 10);
    let mut data = fs::read(t.path("m.img")).unwrap();
    data[2 * BLOCK_SIZE + 17] = 1;
    fs::write(t.path("m.img"), &data).unwrap();
    let o = t.run(&["format", "m.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("block 2") && o.stderr.contains("--force"),
        "{o:?}"
    );
    assert_eq!(o.stdout, "");
    assert_eq!(fs::read(t.path("m.img")).unwrap(), data);
    let o = t.run(&["format", "m.img", "--legs", "2", "--size", "64M", "--force"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(t.run(&["check", "m.img"]).code, 0);
    // Now it holds metadata: named as such.
    let o = t.run(&["format", "m.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("holds dm-fracture metadata"), "{o:?}");

    // Too small: 3 blocks for a 4-block layout.
    t.image("small.img", 3 * 4096);
    let o = t.run(&["format", "small.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("too small") && o.stderr.contains("32 sectors"),
        "{o:?}"
    );
    assert!(fs::read(t.path("small.img"))
        .unwrap()
        .iter()
        .all(|&b| b == 0));

    t.image("z.img", 1 << 20);
    for (args, want) in [
        (&["--legs", "1", "--size", "64M"][..], "--legs 1"),
        (&["--legs", "10", "--size", "64M"][..], "--legs 10"),
        (
            &["--legs", "2", "--size", "64M", "--region-size", "3K"][..],
            "power of two",
        ),
        (
            &["--legs", "2", "--size", "64M", "--region-size", "2K"][..],
            "minimum",
        ),
        (
            &["--legs", "2", "--size", "64M", "--region-size", "2G"][..],
            "maximum",
        ),
        (
            &["--legs", "2", "--size", "64M", "--region-size", "x"][..],
            "--region-size",
        ),
        (&["--legs", "2", "--size", "0"][..], "empty"),
        (&["--legs", "2", "--size", "1000"][..], "multiple of 512"),
        (
            &["--legs", "2", "--size", "64M", "--uuid", "xyz"][..],
            "--uuid",
        ),
    ] {
        let mut a = vec!["format", "z.img"];
        a.extend_from_slice(args);
        let o = t.run(&a);
        assert_eq!(o.code, 1, "{args:?}: {o:?}");
        assert!(o.stderr.contains(want), "{args:?}: {o:?}");
        assert_eq!(o.stdout, "");
    }
    assert!(fs::read(t.path("z.img")).unwrap().iter().all(|&b| b == 0));
    // clap refuses a non-number.
    let o = t.run(&["format", "z.img", "--legs", "two", "--size", "64M"]);
    assert_ne!(o.code, 0);
    assert!(!o.stderr.is_empty());
}

#[test]
fn damaged_leg_block_is_rebuilt_dirty() {
    let t = TempDir::new("legblock");
    t.image("m.img", 36 << 10);
    t.format(
        "m.img",
        &["--nosync", BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5]],
    );
    t.flip("m.img", 4, 2000);
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert_eq!(
        o.stdout, "leg 1: fracture bitmap block 4 fails its checksum\n",
        "{o:?}"
    );
    assert!(o.stderr.contains("1 problem found in m.img"), "{o:?}");
    let o = t.run(&["dump", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("damaged: fracture bitmap block 4 fails its checksum"),
        "{o:?}"
    );

    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("rebuilt with regions 32512-51199 dirty"),
        "{o:?}"
    );
    assert_eq!(fs::metadata(t.path("r.img")).unwrap().len(), 36 << 10);
    let o = t.run(&["check", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout
            .contains("leg 1 is in sync but has 18688 regions dirty"),
        "{o:?}"
    );
    let j = t.dump_json("r.img");
    assert_eq!(j["superblock"]["commit"], 1);
    assert_eq!(j["superblock"]["clean"], true);
    assert_eq!(j["legs"][1]["ranges"], serde_json::json!([[32512, 51199]]));
    assert_eq!(j["legs"][0]["dirty_regions"], 0);
    assert_eq!(j["legs"][2]["dirty_regions"], 0);
    // The input was not touched.
    assert_eq!(t.run(&["check", "m.img"]).code, 1);
}

#[test]
fn misdirected_and_foreign_blocks() {
    let t = TempDir::new("foreign");
    t.image("m.img", 36 << 10);
    t.format(
        "m.img",
        &["--nosync", BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5]],
    );
    // Block 3's contents written at block 5: a valid block, elsewhere.
    let b3 = t.block("m.img", 3);
    t.put_block("m.img", 5, &b3);
    // Block 6 resealed with another UUID.
    let mut b6 = t.block("m.img", 6);
    seal(&mut b6, BlockType::FractureBitmap, 6, &[9; 16]);
    t.put_block("m.img", 6, &b6);
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("fracture bitmap block 5 carries block number 3"),
        "{o:?}"
    );
    assert!(
        o.stdout
            .contains("fracture bitmap block 6 belongs to another mirror"),
        "{o:?}"
    );
    assert!(o.stderr.contains("2 problems found"), "{o:?}");
    assert_eq!(t.run(&["repair", "m.img", "r.img"]).code, 0);
    assert_eq!(t.run(&["check", "r.img"]).code, 0);
    assert_eq!(t.dump_json("r.img")["legs"][2]["dirty_regions"], NR_REGIONS);
}

#[test]
fn damaged_intent_block_clears_clean_flag() {
    let t = TempDir::new("intent");
    t.image("m.img", 36 << 10);
    t.format(
        "m.img",
        &["--nosync", BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5]],
    );
    t.flip("m.img", 7, 100);
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("intent log: intent bitmap block 7 fails its checksum"),
        "{o:?}"
    );
    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("clean flag cleared"), "{o:?}");
    let j = t.dump_json("r.img");
    assert_eq!(j["superblock"]["clean"], false);
    assert_eq!(j["superblock"]["flags"], 0);
    assert_eq!(
        j["intent"]["ranges"],
        serde_json::json!([[0, BITS_PER_BLOCK - 1]])
    );
    let o = t.run(&["check", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("note: not shut down cleanly"), "{o:?}");
}

#[test]
fn padding_bits_are_reported_and_cleared() {
    let t = TempDir::new("padding");
    t.image("m.img", 16 << 10);
    // 128 regions: bits 128.. of each block are padding.
    t.format("m.img", &["--nosync", "--legs", "2", "--size", "64M"]);
    t.edit_sealed("m.img", 2, BlockType::FractureBitmap, |b| {
        set_payload_bit(b, 127);
        set_payload_bit(b, 128);
        set_payload_bit(b, BITS_PER_BLOCK - 1);
    });
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("leg 1: fracture bitmap block 2 has bits set past the last region"),
        "{o:?}"
    );
    let j = t.dump_json("m.img");
    assert_eq!(j["legs"][1]["padding_blocks"], serde_json::json!([2]));
    assert_eq!(j["legs"][1]["dirty_regions"], 1);

    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains("cleared 2 bits set past the last region"),
        "{o:?}"
    );
    assert_eq!(t.run(&["check", "r.img"]).code, 0);
    let j = t.dump_json("r.img");
    assert_eq!(j["legs"][1]["ranges"], serde_json::json!([[127, 127]]));
    assert_eq!(j["legs"][1]["padding_blocks"], serde_json::json!([]));
}

#[test]
fn bad_superblocks() {
    let t = TempDir::new("superblock");
    t.image("m.img", 16 << 10);
    t.format("m.img", &["--nosync", "--legs", "2", "--size", "64M"]);
    let good = t.block("m.img", 0);

    // Random bytes.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let junk: Vec<u8> = (0..BLOCK_SIZE)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    t.put_block("m.img", 0, &junk);
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("bad magic"), "{o:?}");
    assert!(o.stderr.contains("1 problem found"), "{o:?}");
    let o = t.run(&["dump", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("bad magic") && o.stdout.is_empty(),
        "{o:?}"
    );
    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("cannot repair"), "{o:?}");
    assert!(!t.path("r.img").exists());

    // A stale checksum.
    let mut b = good.clone();
    b[300] ^= 1;
    t.put_block("m.img", 0, &b);
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout.contains("superblock block 0 fails its checksum"),
        "{o:?}"
    );

    // Valid checksums over insane geometry.
    for (off, value, want) in [
        (SB_NR_LEGS, 20u64, "number of legs out of range"),
        (SB_NR_REGIONS, 129, "region count does not match"),
    ] {
        t.put_block("m.img", 0, &good);
        t.edit_sealed("m.img", 0, BlockType::Superblock, |b| {
            if off == SB_NR_LEGS {
                b[off..off + 4].copy_from_slice(&(value as u32).to_le_bytes());
            } else {
                b[off..off + 8].copy_from_slice(&value.to_le_bytes());
            }
        });
        let o = t.run(&["check", "m.img"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stdout.contains(want), "{want}: {o:?}");
        let o = t.run(&["dump", "m.img"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(o.stderr.contains(want), "{want}: {o:?}");
        let o = t.run(&["repair", "m.img", "r.img"]);
        assert_eq!(o.code, 1, "{o:?}");
        assert!(
            o.stderr.contains("cannot repair") && o.stderr.contains(want),
            "{o:?}"
        );
    }
}

#[test]
fn truncated_and_blank_images() {
    let t = TempDir::new("truncated");
    t.image("m.img", 36 << 10);
    t.format(
        "m.img",
        &["--nosync", BIG[0], BIG[1], BIG[2], BIG[3], BIG[4], BIG[5]],
    );
    // 5 of 9 blocks: leg 2 and the intent log are missing.
    fs::OpenOptions::new()
        .write(true)
        .open(t.path("m.img"))
        .unwrap()
        .set_len(5 * 4096)
        .unwrap();
    let o = t.run(&["check", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stdout
            .contains("smaller than its metadata layout: 40 sectors, the layout needs 72"),
        "{o:?}"
    );
    let o = t.run(&["dump", "m.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.contains(
            "blocks from 5 on are past the end of the device; its regions 0-51199 are not trusted"
        ),
        "{o:?}"
    );
    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::metadata(t.path("r.img")).unwrap().len(), 9 * 4096);
    assert_eq!(t.run(&["check", "r.img"]).code, 0);
    let j = t.dump_json("r.img");
    assert_eq!(j["legs"][2]["dirty_regions"], NR_REGIONS);
    assert_eq!(j["legs"][1]["dirty_regions"], 0);
    assert_eq!(j["superblock"]["clean"], false);

    t.image("zero.img", 64 << 10);
    let o = t.run(&["check", "zero.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.starts_with("no metadata"), "{o:?}");
    let o = t.run(&["dump", "zero.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("no metadata") && o.stdout.is_empty(),
        "{o:?}"
    );
    let o = t.run(&["repair", "zero.img", "r2.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("no metadata"), "{o:?}");

    t.image("empty.img", 100);
    let o = t.run(&["check", "empty.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.contains("smaller than one 4 KiB block"), "{o:?}");
    assert_eq!(t.run(&["dump", "empty.img"]).code, 1);
}

#[test]
fn repair_refuses_its_input() {
    let t = TempDir::new("same");
    t.image("m.img", 16 << 10);
    t.format("m.img", &["--legs", "2", "--size", "64M"]);
    let before = fs::read(t.path("m.img")).unwrap();
    let o = t.run(&["repair", "m.img", "m.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("same file"), "{o:?}");
    // Through another name for the same file.
    std::os::unix::fs::symlink(t.path("m.img"), t.path("link.img")).unwrap();
    fs::hard_link(t.path("m.img"), t.path("hard.img")).unwrap();
    let abs = t.path("m.img").to_str().unwrap().to_string();
    for other in ["link.img", "hard.img", abs.as_str()] {
        let o = t.run(&["repair", "m.img", other]);
        assert_eq!(o.code, 1, "{other}: {o:?}");
        assert!(o.stderr.contains("same file"), "{o:?}");
    }
    assert_eq!(fs::read(t.path("m.img")).unwrap(), before);
}

#[test]
fn repair_of_sound_metadata_copies_it() {
    let t = TempDir::new("copy");
    t.image("m.img", 1 << 20);
    t.format("m.img", &["--legs", "2", "--size", "64M"]);
    let o = t.run(&["repair", "m.img", "r.img"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.starts_with("nothing needed repair"), "{o:?}");
    assert_eq!(o.stdout.lines().count(), 1);
    // As large as the input.
    assert_eq!(fs::metadata(t.path("r.img")).unwrap().len(), 1 << 20);
    let (a, b) = (t.dump_json("m.img"), t.dump_json("r.img"));
    assert_eq!(b["superblock"]["commit"], 1);
    assert_eq!(a["legs"], b["legs"]);
    assert_eq!(a["intent"], b["intent"]);
    // Bitmap blocks are identical.
    for nr in 1..4 {
        assert_eq!(t.block("m.img", nr), t.block("r.img", nr), "block {nr}");
    }
}

#[test]
fn nonexistent_paths() {
    let t = TempDir::new("missing");
    for args in [
        &["check", "nope.img"][..],
        &["dump", "nope.img"][..],
        &["dump", "--json", "nope.img"][..],
        &["repair", "nope.img", "out.img"][..],
    ] {
        let o = t.run(args);
        assert!(o.code == 1 || o.code == 2, "{args:?}: {o:?}");
        assert_eq!(o.stdout, "", "{args:?}");
        assert!(
            o.stderr.starts_with("fracturectl: nope.img"),
            "{args:?}: {o:?}"
        );
    }
    assert_eq!(t.run(&["check", "nope.img"]).code, 2);
    assert!(!t.path("out.img").exists());
    assert!(!t.path("nope.img").exists());
    // format makes a missing image file, of the layout's size.
    let o = t.run(&["format", "new.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(fs::metadata(t.path("new.img")).unwrap().len(), 4 * 4096);
    assert_eq!(t.run(&["check", "new.img"]).code, 0);
    // In a folder: a file, not a logical volume called vg "sub".
    fs::create_dir(t.path("sub")).unwrap();
    let o = t.run(&["format", "sub/new.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(t.run(&["check", "sub/new.img"]).code, 0);
    // No such folder, no such VG: said so.
    let o = t.run(&["format", "nodir/new.img", "--legs", "2", "--size", "64M"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("nodir/new.img: no such logical volume"),
        "{o:?}"
    );
}

/// Random damage anywhere never makes a command panic, and whatever repair
/// accepts, it turns into metadata that checks clean.
#[test]
fn random_damage_never_panics() {
    let t = TempDir::new("random");
    t.image("orig.img", 36 << 10);
    t.format("orig.img", &BIG);
    let orig = fs::read(t.path("orig.img")).unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for round in 0..40 {
        let mut data = orig.clone();
        // A few random bytes, sometimes with the block resealed, so that
        // the damage gets past the checksum.
        let nr = (next() % 9) as usize;
        for _ in 0..1 + next() % 4 {
            let off = nr * BLOCK_SIZE + (next() as usize % BLOCK_SIZE);
            data[off] = next() as u8;
        }
        if round % 2 == 0 {
            let b = &mut data[nr * BLOCK_SIZE..(nr + 1) * BLOCK_SIZE];
            let kind = match nr {
                0 => BlockType::Superblock,
                7 | 8 => BlockType::IntentBitmap,
                _ => BlockType::FractureBitmap,
            };
            let mut uuid = [0u8; 16];
            uuid.copy_from_slice(&b[16..32]);
            seal(b, kind, nr as u64, &uuid);
        }
        fs::write(t.path("m.img"), &data).unwrap();
        for args in [
            &["check", "m.img"][..],
            &["dump", "m.img"],
            &["dump", "--json", "m.img"],
        ] {
            let o = t.run(args);
            assert!(o.code == 0 || o.code == 1, "round {round} {args:?}: {o:?}");
        }
        let _ = fs::remove_file(t.path("r.img"));
        let o = t.run(&["repair", "m.img", "r.img"]);
        assert!(o.code == 0 || o.code == 1, "round {round}: {o:?}");
        if o.code == 0 {
            let c = t.run(&["check", "r.img"]);
            assert_eq!(c.code, 0, "round {round}: {o:?} then {c:?}");
        }
    }
}

/// A valid superblock (good checksum) over a geometry far bigger than the
/// device: one line per bitmap, not one per missing block; no giant repair.
#[test]
fn huge_geometry_on_a_tiny_device() {
    use fracture_core::format::Superblock;
    use fracture_core::region::Geometry;
    let t = TempDir::new("huge");
    // 512 TiB in 4 KiB regions: ~4.2e6 blocks per bitmap, 34 GB of metadata.
    let g = Geometry::new(1 << 40, 8).unwrap();
    let sb = Superblock::new([9; 16], &g, 2);
    let mut b = vec![0u8; BLOCK_SIZE];
    sb.encode(&mut b);
    fs::write(t.path("huge.img"), &b).unwrap();
    let o = t.run(&["check", "huge.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stdout.lines().count() < 10, "{o:?}");
    let o = t.run(&["dump", "huge.img"]);
    assert!(o.stdout.lines().count() < 40, "{o:?}");
    let o = t.run(&["repair", "huge.img", "out.img"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("not a truncated device"), "{o:?}");
    assert!(!t.path("out.img").exists());
}
