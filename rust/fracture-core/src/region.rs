// SPDX-License-Identifier: GPL-2.0

//! Region maths: the target's address space is cut into fixed-size regions,
//! the unit of change tracking.
//!
//! All sizes are in 512-byte sectors, like everything in device-mapper.

use core::ops::Range;

/// Smallest region size accepted: one 4 KiB page.
pub const MIN_REGION_SECTORS: u64 = 8;

/// Largest region size accepted: 1 GiB.
pub const MAX_REGION_SECTORS: u64 = 1 << 21;

/// Why a region size was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSizeError {
    /// Not a power of two.
    NotPowerOfTwo,
    /// Below [`MIN_REGION_SECTORS`].
    TooSmall,
    /// Above [`MAX_REGION_SECTORS`].
    TooLarge,
}

impl core::fmt::Display for RegionSizeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotPowerOfTwo => f.write_str("is not a power of two"),
            Self::TooSmall => write!(f, "is below the minimum of {MIN_REGION_SECTORS} sectors"),
            Self::TooLarge => write!(f, "is above the maximum of {MAX_REGION_SECTORS} sectors"),
        }
    }
}

/// The geometry of a target: its length and how it is cut into regions.
///
/// Invariant: `region_sectors` is a power of two within
/// [`MIN_REGION_SECTORS`]..=[`MAX_REGION_SECTORS`]; `nr_regions` is
/// `ceil(len / region_sectors)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    len: u64,
    region_shift: u32,
    nr_regions: u64,
}

impl Geometry {
    /// Checks a region size given in sectors.
    pub fn check_region_size(region_sectors: u64) -> Result<(), RegionSizeError> {
        if !region_sectors.is_power_of_two() {
            Err(RegionSizeError::NotPowerOfTwo)
        } else if region_sectors < MIN_REGION_SECTORS {
            Err(RegionSizeError::TooSmall)
        } else if region_sectors > MAX_REGION_SECTORS {
            Err(RegionSizeError::TooLarge)
        } else {
            Ok(())
        }
    }

    /// The geometry of a target of `len` sectors cut in regions of
    /// `region_sectors`.
    pub fn new(len: u64, region_sectors: u64) -> Result<Self, RegionSizeError> {
        Self::check_region_size(region_sectors)?;
        let region_shift = region_sectors.trailing_zeros();
        // Cannot overflow: region_sectors >= 8, so len >> 3 plus one fits.
        let nr_regions = (len >> region_shift) + u64::from(len & (region_sectors - 1) != 0);
        Ok(Self {
            len,
            region_shift,
            nr_regions,
        })
    }

    /// Length of the target in sectors.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the target has no sectors at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Region size in sectors.
    pub fn region_sectors(&self) -> u64 {
        1 << self.region_shift
    }

    /// log2 of the region size in sectors.
    pub fn region_shift(&self) -> u32 {
        self.region_shift
    }

    /// Number of regions; the last one may be partial.
    pub fn nr_regions(&self) -> u64 {
        self.nr_regions
    }

    /// The region holding `sector` (a target-relative sector).
    pub fn region_of(&self, sector: u64) -> u64 {
        sector >> self.region_shift
    }

    /// The regions touched by `nr_sectors` sectors starting at `sector`,
    /// clamped to the target. An empty I/O touches no region.
    pub fn regions_of(&self, sector: u64, nr_sectors: u64) -> Range<u64> {
        if nr_sectors == 0 || sector >= self.len {
            return 0..0;
        }
        let end = sector.saturating_add(nr_sectors).min(self.len);
        self.region_of(sector)..self.region_of(end - 1) + 1
    }

    /// The sectors of `region`, clamped to the target (the last region may
    /// be short). A region past the end is empty.
    pub fn sectors_of(&self, region: u64) -> Range<u64> {
        if region >= self.nr_regions {
            return self.len..self.len;
        }
        let start = region << self.region_shift;
        start..start.saturating_add(self.region_sectors()).min(self.len)
    }

    /// Whether an I/O covers `region` entirely.
    pub fn covers_region(&self, sector: u64, nr_sectors: u64, region: u64) -> bool {
        let r = self.sectors_of(region);
        !r.is_empty() && sector <= r.start && sector.saturating_add(nr_sectors) >= r.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_size_rules() {
        assert_eq!(Geometry::check_region_size(8), Ok(()));
        assert_eq!(Geometry::check_region_size(1024), Ok(()));
        assert_eq!(Geometry::check_region_size(MAX_REGION_SECTORS), Ok(()));
        assert_eq!(
            Geometry::check_region_size(4),
            Err(RegionSizeError::TooSmall)
        );
        assert_eq!(
            Geometry::check_region_size(0),
            Err(RegionSizeError::NotPowerOfTwo)
        );
        assert_eq!(
            Geometry::check_region_size(24),
            Err(RegionSizeError::NotPowerOfTwo)
        );
        assert_eq!(
            Geometry::check_region_size(MAX_REGION_SECTORS * 2),
            Err(RegionSizeError::TooLarge)
        );
    }

    #[test]
    fn counts_partial_last_region() {
        assert_eq!(Geometry::new(0, 8).unwrap().nr_regions(), 0);
        assert_eq!(Geometry::new(1, 8).unwrap().nr_regions(), 1);
        assert_eq!(Geometry::new(8, 8).unwrap().nr_regions(), 1);
        assert_eq!(Geometry::new(9, 8).unwrap().nr_regions(), 2);
        assert_eq!(Geometry::new(u64::MAX, 8).unwrap().nr_regions(), 1 << 61);
        let g = Geometry::new(1000, 64).unwrap();
        assert_eq!(g.nr_regions(), 16);
        assert_eq!(g.sectors_of(15), 960..1000);
        assert_eq!(g.sectors_of(16), 1000..1000);
    }

    #[test]
    fn regions_of_io() {
        let g = Geometry::new(1 << 20, 1024).unwrap();
        assert_eq!(g.regions_of(0, 0), 0..0);
        assert_eq!(g.regions_of(0, 1), 0..1);
        assert_eq!(g.regions_of(1023, 1), 0..1);
        assert_eq!(g.regions_of(1023, 2), 0..2);
        assert_eq!(g.regions_of(1024, 1024), 1..2);
        assert_eq!(g.regions_of((1 << 20) - 1, 100), 1023..1024);
        assert_eq!(g.regions_of(1 << 20, 8), 0..0);
        assert_eq!(g.regions_of(u64::MAX, u64::MAX), 0..0);
    }

    #[test]
    fn covers() {
        let g = Geometry::new(1000, 64).unwrap();
        assert!(g.covers_region(0, 64, 0));
        assert!(!g.covers_region(1, 64, 0));
        assert!(g.covers_region(960, 40, 15));
        assert!(!g.covers_region(960, 39, 15));
        assert!(!g.covers_region(0, 2000, 16));
    }

    /// Every sector of an I/O lies in a region of `regions_of`, and every
    /// region of `regions_of` holds a sector of the I/O.
    #[test]
    fn regions_of_matches_brute_force() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2000 {
            let shift = 3 + (next() % 6) as u32;
            let len = next() % 5000;
            let g = Geometry::new(len, 1 << shift).unwrap();
            let sector = next() % 5200;
            let n = next() % 600;
            let r = g.regions_of(sector, n);
            let mut lo = u64::MAX;
            let mut hi = 0;
            for s in sector..(sector + n).min(len) {
                lo = lo.min(s >> shift);
                hi = hi.max((s >> shift) + 1);
            }
            if lo == u64::MAX {
                assert!(r.is_empty(), "{len} {shift} {sector} {n}");
            } else {
                assert_eq!(r, lo..hi, "{len} {shift} {sector} {n}");
            }
        }
    }
}
