//! Stream tables (SPEC D3; IHI 0070 G.b §3.3, §5.1, §6.3.24–25).
//!
//! The driver reaches STEs only through the [`StreamTable`] trait, which has two
//! implementations: [`OwnedStreamTable`] here (a table this driver allocated and programs into
//! `STRTAB_BASE`), and the adopted table of the crash-kernel crate (a live table it found and
//! must not move). Nothing else in the driver knows which one it has.

use core::mem::MaybeUninit;

use heapless::Vec;
use tock_registers::LocalRegisterCopy;

use crate::arch::idr::Features;
use crate::arch::l1std::{L1StdConfig, STRTAB_SPLIT};
use crate::arch::regs::{STRTAB_BASE, STRTAB_BASE_CFG};
use crate::dma::DmaBuf;
use crate::error::Error;
use crate::hal::{Hal, PhysAddr};
use crate::two_level::{self, Shape, TwoLevel};
use crate::writer::{make, ENTRY_QWORDS};
use crate::SmmuConfig;

/// Bytes per STE.
pub const STE_BYTES: usize = 64;
/// STEs per level-2 table with `SPLIT` = 8 (SPEC D3).
pub const STES_PER_L2: u32 = 1 << STRTAB_SPLIT;
/// The largest `LOG2SIZE` of a 2-level table: L1 at most 2^17 descriptors (1 MiB), the limit
/// adoption enforces too (SPEC K2).
pub const MAX_LOG2_TWO_LEVEL: u32 = STRTAB_SPLIT + 17;
/// The largest `LOG2SIZE` of a linear table this driver allocates (2^16 STEs = 4 MiB); SMMUs
/// with more StreamIDs and no 2-level support are limited to this many.
pub const MAX_LOG2_LINEAR: u32 = 16;
/// How many level-2 tables an [`OwnedStreamTable`] can hold (each covers 256 StreamIDs), a
/// fixed bound because the driver has no heap: 256 × 256 = 65536 StreamIDs in use.
pub const MAX_L2_TABLES: usize = 256;

/// `STRTAB_BASE_CFG.FMT` values (§6.3.25).
pub mod fmt {
    /// Linear.
    pub const LINEAR: u32 = 0b00;
    /// 2-level.
    pub const TWO_LEVEL: u32 = 0b01;
}

/// Where an STE lives: a buffer and the index of its first 64-bit word.
#[derive(Clone, Copy, Debug)]
pub struct SteLocation<'a> {
    /// The table (linear) or level-2 table holding the STE.
    pub buf: &'a DmaBuf,
    /// Index of the STE's word 0 in `buf`.
    pub first_word: usize,
}

impl SteLocation<'_> {
    /// Reads the STE's 8 words.
    pub fn read<H: Hal + ?Sized>(&self, hal: &H) -> Result<[u64; ENTRY_QWORDS], Error> {
        let mut words = [0u64; ENTRY_QWORDS];
        for (i, w) in words.iter_mut().enumerate() {
            *w = self.buf.read(hal, self.first_word + i)?;
        }
        Ok(words)
    }
}

/// What [`StreamTable::prepare`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prepared {
    /// The STE was already addressable.
    Present,
    /// A level-1 descriptor was published: the SMMU may hold the old (invalid) descriptor
    /// in its configuration cache, so the caller must issue `CMD_CFGI_STE` with `Leaf` = 0
    /// and a `CMD_SYNC` before relying on it (§4.3.1).
    NewLevel1Descriptor,
}

/// A stream table as the driver core uses it.
pub trait StreamTable {
    /// log2 of the number of StreamIDs the table covers.
    fn log2_size(&self) -> u32;

    /// The `(STRTAB_BASE, STRTAB_BASE_CFG)` a reset must program, or `None` when the table
    /// is already live and those registers must not be written (adoption, SPEC K5).
    fn base_registers(&self) -> Option<(u64, u32)>;

    /// Makes `sid`'s STE addressable, allocating (or mapping and validating) its level-2
    /// table when needed. A new level-2 table is filled with `fill` before it is published.
    fn prepare<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        sid: u32,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<Prepared, Error>;

    /// Where `sid`'s STE is; it must have been prepared.
    fn locate(&self, sid: u32) -> Result<SteLocation<'_>, Error>;

    /// Whether `sid`'s STE was inherited live and has not been replaced yet (SPEC K11): such
    /// an STE may only be replaced by an explicit attach.
    fn is_deferred(&self, sid: u32) -> bool {
        let _ = sid;
        false
    }

    /// Records that `sid`'s deferred STE has been replaced (its hitless write completed).
    ///
    /// Through `&self`: attaches of different masters run at once under the driver's read
    /// lock of the table, each clearing its own StreamIDs (an atomic bitmap serves).
    fn clear_deferred(&self, sid: u32) {
        let _ = sid;
    }

    /// Whether `sid`'s STE lives in a structure inherited live from a previous kernel (an
    /// adopted linear or level-2 table), whatever it holds now: such an STE never gets an
    /// RMR bypass (SPEC K10). A table that cannot tell (a StreamID not prepared yet) says
    /// `true`. A table the driver built says `false`.
    fn is_inherited(&self, sid: u32) -> bool {
        let _ = sid;
        false
    }

    /// Gives every buffer back to the HAL, where the table is: a table can be tens of KiB
    /// (its directory of level-2 tables), and a crash kernel's stack has no room to move it.
    /// Afterwards the table refers to memory it no longer owns: it is never used again, only
    /// forgotten or overwritten (no table type has a `Drop` that would touch it).
    ///
    /// # Safety
    /// The SMMU no longer uses the table (it was reset or pointed elsewhere), and the table
    /// is not used or released again afterwards.
    unsafe fn release<H: Hal + ?Sized>(&mut self, hal: &H);
}

/// Layout of an [`OwnedStreamTable`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// One array of 2^log2 STEs.
    Linear,
    /// Level-1 descriptors, each covering 256 STEs in a lazily allocated level-2 table.
    TwoLevel,
}

impl Layout {
    /// The layout and size for an SMMU: 2-level when the SMMU supports it and there are more
    /// StreamIDs than one level-2 table holds, as Linux chooses. Returns `(layout, log2)`.
    pub fn choose(two_level_supported: bool, sid_bits: u8) -> (Layout, u32) {
        let sid_bits = u32::from(sid_bits).min(32);
        if two_level_supported && sid_bits > STRTAB_SPLIT {
            (Layout::TwoLevel, sid_bits.min(MAX_LOG2_TWO_LEVEL))
        } else {
            (Layout::Linear, sid_bits.min(MAX_LOG2_LINEAR))
        }
    }
}

/// A stream table the driver allocated.
pub struct OwnedStreamTable {
    /// The linear table, or the level-1 descriptors and the level-2 tables.
    table: TwoLevel<MAX_L2_TABLES>,
}

impl core::fmt::Debug for OwnedStreamTable {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("OwnedStreamTable");
        d.field("layout", &self.layout());
        self.table
            .debug_fields(&mut d, "l2_tables")
            .finish_non_exhaustive()
    }
}

/// An empty level-2 directory, copied into a table built in place: writing `Vec::new()`
/// through a pointer makes a stack temporary of the directory's full size (10 KiB) when the
/// compiler does not optimise, and a crash kernel's stack has no room for it.
static EMPTY_L2_DIRECTORY: Vec<(u32, DmaBuf), MAX_L2_TABLES> = Vec::new();

/// The image of an abort STE (unattached StreamIDs abort, SPEC D2).
fn abort_fill() -> [u64; ENTRY_QWORDS] {
    make::ste_image(&make::abort_ste())
}

impl OwnedStreamTable {
    /// Allocates a table of 2^`log2` StreamIDs. A linear table is filled with `fill` (every
    /// StreamID gets that STE); a 2-level table starts with every descriptor invalid, so
    /// unconfigured StreamIDs take the `C_BAD_STREAMID` path until their level-2 table exists.
    pub fn new<H: Hal + ?Sized>(
        hal: &H,
        layout: Layout,
        log2: u32,
        coherent: bool,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<Self, Error> {
        let shape = Self::shape(layout, log2, coherent);
        let table = TwoLevel::new(hal, shape, Some(fill))?;
        Ok(Self { table })
    }

    /// As [`OwnedStreamTable::new`], built in `place` (for
    /// [`Smmu::new_in_with`](crate::Smmu::new_in_with)): the level-2 directory never passes
    /// through the stack. On failure `place` is left uninitialised.
    pub fn new_in<'p, H: Hal + ?Sized>(
        place: &'p mut MaybeUninit<Self>,
        hal: &H,
        layout: Layout,
        log2: u32,
        coherent: bool,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<&'p mut Self, Error> {
        let shape = Self::shape(layout, log2, coherent);
        let base = two_level::alloc_base(hal, shape, Some(fill))?;
        let p = place.as_mut_ptr();
        // SAFETY: `p` comes from `&mut MaybeUninit<Self>`: valid for writes and aligned, and so
        // is its only field; the directory template is the empty static.
        unsafe {
            TwoLevel::write_in(&raw mut (*p).table, base, shape, &EMPTY_L2_DIRECTORY);
        }
        // SAFETY: every field was written above.
        Ok(unsafe { place.assume_init_mut() })
    }

    /// The table's shape: its log2 size as the driver's limits clamp it, and its level-2
    /// split (`None` for a linear table).
    fn shape(layout: Layout, log2: u32, coherent: bool) -> Shape {
        let (log2, split) = match layout {
            Layout::Linear => (log2.min(MAX_LOG2_LINEAR), None),
            Layout::TwoLevel => (
                log2.clamp(STRTAB_SPLIT, MAX_LOG2_TWO_LEVEL),
                Some(STRTAB_SPLIT),
            ),
        };
        Shape {
            log2,
            split,
            coherent,
        }
    }

    /// The stream table a driver with these `features` and this `config` needs, every STE
    /// abort: the layout and size [`Layout::choose`] gives for the probed features, and the
    /// coherency the driver itself will use (`config.coherent`, else `IDR0.COHACC`), so the
    /// table's cache maintenance can never disagree with the driver's (SPEC K17).
    ///
    /// This is the boilerplate every bring-up repeats, in one call:
    ///
    /// ```
    /// use smmu::{OwnedStreamTable, Smmu, SmmuConfig};
    /// use smmu_model::ModelConfig;
    /// use smmu_model_platform::ModelPlatform;
    ///
    /// let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
    /// let (regs, hal) = (platform.regs(), platform.hal());
    /// let features = smmu::probe::probe(&regs).unwrap();
    /// let config = SmmuConfig::default();
    /// let strtab = OwnedStreamTable::for_smmu(&hal, &features, &config).unwrap();
    /// let smmu = Smmu::new(regs, hal, features, strtab, config).unwrap();
    /// # let _ = smmu;
    /// ```
    ///
    /// In place (inside [`Smmu::new_in_with`](crate::Smmu::new_in_with)):
    /// [`OwnedStreamTable::for_smmu_in`].
    pub fn for_smmu<H: Hal + ?Sized>(
        hal: &H,
        features: &Features,
        config: &SmmuConfig,
    ) -> Result<Self, Error> {
        let (layout, log2, coherent) = Self::shape_for(features, config);
        Self::new(hal, layout, log2, coherent, &abort_fill())
    }

    /// [`OwnedStreamTable::for_smmu`], built in `place`: the form for
    /// [`Smmu::new_in_with`](crate::Smmu::new_in_with), whose closure gets the HAL and the
    /// table's place. On failure `place` is left uninitialised.
    ///
    /// ```
    /// use core::mem::MaybeUninit;
    /// use smmu::{OwnedStreamTable, Smmu, SmmuConfig};
    /// use smmu_model::ModelConfig;
    /// use smmu_model_platform::{ModelHal, ModelPlatform, ModelRegs};
    ///
    /// let platform = ModelPlatform::new(ModelConfig::default()).unwrap();
    /// let (regs, hal) = (platform.regs(), platform.hal());
    /// let features = smmu::probe::probe(&regs).unwrap();
    /// let config = SmmuConfig::default();
    /// let mut slot: Box<MaybeUninit<Smmu<ModelRegs, ModelHal, OwnedStreamTable>>> =
    ///     Box::new_uninit();
    /// let smmu = Smmu::new_in_with(&mut slot, regs, hal, features, config, |hal, place| {
    ///     OwnedStreamTable::for_smmu_in(place, hal, &features, &config).map(|_| ())
    /// })
    /// .unwrap();
    /// # let _ = smmu;
    /// ```
    pub fn for_smmu_in<'p, H: Hal + ?Sized>(
        place: &'p mut MaybeUninit<Self>,
        hal: &H,
        features: &Features,
        config: &SmmuConfig,
    ) -> Result<&'p mut Self, Error> {
        let (layout, log2, coherent) = Self::shape_for(features, config);
        Self::new_in(place, hal, layout, log2, coherent, &abort_fill())
    }

    /// Layout, log2 size and coherency of [`OwnedStreamTable::for_smmu`]'s table; the
    /// coherency is computed exactly as [`Smmu::new_in_with`](crate::Smmu::new_in_with) does.
    fn shape_for(features: &Features, config: &SmmuConfig) -> (Layout, u32, bool) {
        let (layout, log2) = Layout::choose(features.two_level_stream_table, features.sid_bits);
        (layout, log2, config.coherent.unwrap_or(features.coherent))
    }

    /// The layout.
    pub fn layout(&self) -> Layout {
        if self.table.is_two_level() {
            Layout::TwoLevel
        } else {
            Layout::Linear
        }
    }

    /// Number of level-2 tables allocated so far.
    pub fn l2_tables(&self) -> usize {
        self.table.level2_tables()
    }

    /// Physical address of the linear table or the level-1 array.
    pub fn base_pa(&self) -> PhysAddr {
        self.table.base().pa()
    }

    /// Unpublishes the level-2 table holding `sid` (a 2-level table): its level-1
    /// descriptor becomes invalid with one 64-bit store, and the table is handed back for the
    /// caller to release **after** a `CMD_CFGI_STE` (`Leaf` = 0) and `CMD_SYNC` complete
    /// (§4.3.1; the SMMU may still hold the old descriptor until then). `None` for a linear
    /// table or a level-2 table that does not exist.
    pub fn take_level2<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        sid: u32,
    ) -> Result<Option<DmaBuf>, Error> {
        self.check_sid(sid)?;
        self.table.take(hal, sid)
    }

    fn check_sid(&self, sid: u32) -> Result<(), Error> {
        if self.table.contains(sid) {
            Ok(())
        } else {
            Err(Error::StreamIdOutOfRange(sid))
        }
    }
}

impl StreamTable for OwnedStreamTable {
    fn log2_size(&self) -> u32 {
        self.table.log2()
    }

    fn base_registers(&self) -> Option<(u64, u32)> {
        let mut base = LocalRegisterCopy::<u64, STRTAB_BASE::Register>::new(0);
        base.modify(STRTAB_BASE::RA::SET + STRTAB_BASE::ADDR.val(self.base_pa().0 >> 6));
        let mut cfg = LocalRegisterCopy::<u32, STRTAB_BASE_CFG::Register>::new(0);
        let log2 = self.table.log2();
        match self.layout() {
            Layout::Linear => cfg.modify(
                STRTAB_BASE_CFG::FMT.val(fmt::LINEAR) + STRTAB_BASE_CFG::LOG2SIZE.val(log2),
            ),
            Layout::TwoLevel => cfg.modify(
                STRTAB_BASE_CFG::FMT.val(fmt::TWO_LEVEL)
                    + STRTAB_BASE_CFG::SPLIT.val(STRTAB_SPLIT)
                    + STRTAB_BASE_CFG::LOG2SIZE.val(log2),
            ),
        }
        Some((base.get(), cfg.get()))
    }

    fn prepare<H: Hal + ?Sized>(
        &mut self,
        hal: &H,
        sid: u32,
        fill: &[u64; ENTRY_QWORDS],
    ) -> Result<Prepared, Error> {
        self.check_sid(sid)?;
        // The level-2 table is filled completely before its descriptor makes it reachable,
        // and one 64-bit single-copy-atomic store publishes it (SPEC D3).
        let published = self.table.prepare(hal, sid, Some(fill), |table| {
            L1StdConfig {
                span: (STRTAB_SPLIT + 1) as u8,
                l2_ptr: table.pa().0,
            }
            .encode()
            .to_words()[0]
        })?;
        Ok(if published {
            Prepared::NewLevel1Descriptor
        } else {
            Prepared::Present
        })
    }

    fn locate(&self, sid: u32) -> Result<SteLocation<'_>, Error> {
        let (buf, first_word) = self
            .table
            .locate(sid)
            .ok_or(Error::StreamIdOutOfRange(sid))?;
        Ok(SteLocation { buf, first_word })
    }

    unsafe fn release<H: Hal + ?Sized>(&mut self, hal: &H) {
        // SAFETY: forwarded from the caller: the SMMU no longer uses the table, and it is not
        // used or released again.
        unsafe { self.table.release(hal) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::idr::IdRegs;
    use crate::host::HostHal;

    /// QEMU-7.2-like ID registers: 2-level stream table, SIDSIZE 16, `COHACC` = 1.
    fn features() -> Features {
        let ids = IdRegs {
            idr: [0x0D44_101A, 0x0273_0010, 0, 0x1404, 0, 0x74],
            iidr: 0,
            aidr: 1,
        };
        crate::probe::check(&ids).expect("features")
    }

    // spec: D3, K17
    #[test]
    fn for_smmu_takes_the_layout_from_the_features_and_coherency_from_the_config() {
        let hal = HostHal::new();
        let f = features();
        assert!(f.coherent && f.two_level_stream_table);
        let t = OwnedStreamTable::for_smmu(&hal, &f, &SmmuConfig::default()).expect("table");
        assert_eq!(
            (t.layout(), t.log2_size(), t.table.coherent()),
            (Layout::TwoLevel, 16, true)
        );
        // The platform says non-coherent: the table agrees with the driver, not IDR0.COHACC.
        let config = SmmuConfig {
            coherent: Some(false),
            ..SmmuConfig::default()
        };
        let mut place = MaybeUninit::uninit();
        let u = OwnedStreamTable::for_smmu_in(&mut place, &hal, &f, &config).expect("in place");
        assert!(!u.table.coherent() && !u.table.base().coherent());
        // SAFETY: never programmed into an SMMU.
        unsafe {
            u.release(&hal);
            let mut t = t;
            t.release(&hal);
        }
        assert_eq!(hal.live_allocations(), 0);
    }
}
