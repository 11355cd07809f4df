//! A guest's stage 1 for a nested domain (SPEC D13), as a guest kernel would build it: a page
//! table mapping its IOVAs to its IPAs and a CD pointing at it, both in its IPA space. Here the
//! guest's memory is identity-mapped (IPA = PA) for its structures, which the host's nesting
//! parent maps, and the guest's STE words (its stage-1 half) are what it hands the host.

use smmu::arch::cd::TableControls;
use smmu::arch::ste::fields as stef;
use smmu::arch::{Cacheability, Granule, Shareability};
use smmu::strtab::StreamTable;
use smmu::writer::make;
use smmu::{Domain, Error, Hal, RegisterAccess, Smmu};
use smmu_pagetable::{Config, Granule as PtGranule, Iova, PageTable, PhysAddr, Prot, Stage};

use crate::carveout::Carveout;

/// The guest's stage 1, built.
pub struct Guest {
    /// The guest's page table (IOVA → IPA).
    pub table: PageTable<&'static Carveout>,
    /// The guest's STE words: `V`, `Config` = stage 1, its CD table (an IPA) and how to
    /// fetch it.
    pub ste: [u64; 8],
    /// The IPA (= PA) of its CD table.
    pub cd: u64,
    /// The IPA (= PA) of its page table's root.
    pub ttb: u64,
    /// How many structure pages (the CD's and each table's) the parent maps at IPA = PA.
    pub structures: usize,
}

/// Builds a guest's stage 1 with ASID `asid` mapping each `(iova, ipa)` page of `maps`, and
/// maps its structures at IPA = PA in the nesting parent `parent` (the host's part).
pub fn build<R: RegisterAccess, H: Hal, S: StreamTable>(
    smmu: &Smmu<R, H, S>,
    parent: &Domain<&'static Carveout>,
    carve: &'static Carveout,
    asid: u16,
    maps: &[(u64, u64)],
) -> Result<Guest, Error> {
    let rw = Prot::READ | Prot::WRITE | Prot::CACHE;
    let oas = smmu.features().oas;
    let table = PageTable::new(
        Config {
            stage: Stage::Stage1,
            granule: PtGranule::Size4K,
            ias: 48,
            oas: oas.bits(),
        },
        carve,
    )?;
    for &(iova, ipa) in maps {
        table.map(Iova(iova), PhysAddr(ipa), 4096, rw)?;
    }
    let c = table.stage1_config()?;
    let cd = make::stage1_cd(
        asid,
        TableControls {
            tsz: c.t0sz,
            ir: Cacheability::WriteBackAllocate,
            or: Cacheability::WriteBackAllocate,
            sh: Shareability::Inner,
            epd: false,
            ttb: c.ttb.0,
        },
        Granule::Size4K,
        oas,
        c.mair,
    );
    let cd_page = carve.alloc(4096, 4096)?;
    for (i, w) in make::cd_image(&cd).iter().enumerate() {
        // SAFETY: the CD page was just allocated from the carve-out (identity-mapped) for
        // this CD only; aligned 64-bit stores inside it.
        unsafe { (cd_page.va.as_ptr() as *mut u64).add(i).write_volatile(*w) };
    }
    // Every guest structure page at IPA = PA in the parent: the CD and each table.
    let mut pages = [0u64; 16];
    let mut n = 0;
    let mut add = |p: u64| {
        if !pages[..n].contains(&p) {
            if let Some(slot) = pages.get_mut(n) {
                *slot = p;
                n += 1;
            }
        }
    };
    add(cd_page.pa.0);
    add(c.ttb.0);
    table.walk(|e| {
        if let smmu_pagetable::WalkEntry::Table { table, .. } = *e {
            add(table.0);
        }
    });
    for &p in &pages[..n] {
        smmu.map(parent, Iova(p), PhysAddr(p), 4096, rw)?;
    }
    let mut ste = [0u64; 8];
    stef::V.set(&mut ste, 1);
    stef::CONFIG.set(&mut ste, 0b101);
    stef::S1_CONTEXT_PTR.set(&mut ste, cd_page.pa.0 >> 6);
    stef::S1CIR.set(&mut ste, 1);
    stef::S1COR.set(&mut ste, 1);
    stef::S1CSH.set(&mut ste, 3);
    Ok(Guest {
        table,
        ste,
        cd: cd_page.pa.0,
        ttb: c.ttb.0,
        structures: n,
    })
}
