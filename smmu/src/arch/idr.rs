//! The ID registers decoded into a typed feature set (IHI 0070 G.b §6.3.1–§6.3.8).

use tock_registers::LocalRegisterCopy;

use super::entry::AddressSize;
use super::regs::{AIDR, IDR0, IDR1, IDR3, IDR5, IIDR};

/// Raw values of the identification registers, as read from the SMMU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegs {
    /// `SMMU_IDR0` … `SMMU_IDR5`.
    pub idr: [u32; 6],
    /// `SMMU_IIDR`.
    pub iidr: u32,
    /// `SMMU_AIDR`.
    pub aidr: u32,
}

/// Endianness of translation-table walks the SMMU supports (`IDR0.TTENDIAN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableEndianness {
    /// Either, selected per context (`0b00`).
    Mixed,
    /// Little-endian only (`0b10`).
    Little,
    /// Big-endian only (`0b11`).
    Big,
    /// The reserved value `0b01`.
    Reserved,
}

/// Stall support (`IDR0.STALL_MODEL`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallModel {
    /// Stall and terminate are both supported (`0b00`).
    Stall,
    /// Stalling is not supported (`0b01`).
    NoStall,
    /// Stalling is forced on faults that can stall (`0b10`).
    Forced,
    /// The reserved value `0b11`.
    Reserved,
}

/// Hardware update of Access flag / dirty state (`IDR0.HTTU`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Httu {
    /// No hardware update.
    None,
    /// Access flag.
    Access,
    /// Access flag and dirty state.
    AccessDirty,
    /// Access flag, dirty state, and the Access flag of table descriptors.
    AccessDirtyTableAf,
}

/// Implementation identification (`SMMU_IIDR`, §6.3.7): the key of errata workarounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Iidr {
    /// `ProductID`.
    pub product_id: u16,
    /// `Variant`.
    pub variant: u8,
    /// `Revision`.
    pub revision: u8,
    /// `Implementer` (JEP106; Arm is `0x43B`).
    pub implementer: u16,
}

impl Iidr {
    /// The JEP106 code of Arm Limited.
    pub const IMPLEMENTER_ARM: u16 = 0x43b;
    /// Arm CoreLink MMU-600.
    pub const PRODUCT_MMU_600: u16 = 0x483;
    /// Arm CoreLink MMU-700.
    pub const PRODUCT_MMU_700: u16 = 0x487;
}

/// What an SMMU implements, decoded from its ID registers. Every field cites its register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Features {
    /// `IDR0.S1P`: stage-1 translation.
    pub stage1: bool,
    /// `IDR0.S2P`: stage-2 translation.
    pub stage2: bool,
    /// `IDR0.TTF` bit 1: VMSAv8-64 (AArch64) translation tables.
    pub aarch64_tables: bool,
    /// `IDR0.TTF` bit 0: AArch32 (LPAE) translation tables.
    pub aarch32_tables: bool,
    /// `IDR0.COHACC`: structure and queue accesses are IO-coherent.
    pub coherent: bool,
    /// `IDR0.BTM`: broadcast TLB maintenance.
    pub btm: bool,
    /// `IDR0.HTTU`.
    pub httu: Httu,
    /// `IDR0.DORMHINT`.
    pub dormant_hint: bool,
    /// `IDR0.Hyp`: EL2 and EL2-E2H StreamWorlds, `CR2.E2H`.
    pub hyp: bool,
    /// `IDR0.ATS`: PCIe ATS.
    pub ats: bool,
    /// `IDR0.NS1ATS`: split-stage ATS is not supported when set.
    pub ns1ats: bool,
    /// `IDR0.ASID16`: 16-bit ASIDs (else 8-bit).
    pub asid16: bool,
    /// `IDR0.MSI`: message-signalled interrupts and `CMD_SYNC` MSI completion.
    pub msi: bool,
    /// `IDR0.SEV`: wake-up events.
    pub sev: bool,
    /// `IDR0.ATOS`.
    pub atos: bool,
    /// `IDR0.PRI`: page request interface and the PRI queue.
    pub pri: bool,
    /// `IDR0.VMW`: VMID wildcards.
    pub vmw: bool,
    /// `IDR0.VMID16`: 16-bit VMIDs (else 8-bit).
    pub vmid16: bool,
    /// `IDR0.CD2L`: 2-level CD tables.
    pub cd2l: bool,
    /// `IDR0.VATOS`.
    pub vatos: bool,
    /// `IDR0.TTENDIAN`.
    pub endianness: TableEndianness,
    /// `IDR0.ATSRECERR`.
    pub ats_recerr: bool,
    /// `IDR0.STALL_MODEL`.
    pub stall_model: StallModel,
    /// `IDR0.TERM_MODEL`: terminated transactions always abort (CD.A must be 1).
    pub term_model_abort_only: bool,
    /// `IDR0.ST_LEVEL`: 2-level stream tables.
    pub two_level_stream_table: bool,
    /// `IDR0.RME_IMPL`.
    pub rme: bool,
    /// `IDR1.ECMDQ`: enhanced command queues.
    pub ecmdq: bool,
    /// `IDR1.TABLES_PRESET`: table bases are fixed.
    pub tables_preset: bool,
    /// `IDR1.QUEUES_PRESET`: queue bases are fixed.
    pub queues_preset: bool,
    /// `IDR1.REL`: preset addresses are relative to the SMMU base.
    pub rel: bool,
    /// `IDR1.ATTR_TYPES_OVR`: STE memory-type and shareability overrides.
    pub attr_types_ovr: bool,
    /// `IDR1.ATTR_PERMS_OVR`: STE permission overrides.
    pub attr_perms_ovr: bool,
    /// `IDR1.CMDQS`: log2 of the largest command queue.
    pub cmdq_log2_max: u8,
    /// `IDR1.EVENTQS`: log2 of the largest event queue.
    pub evtq_log2_max: u8,
    /// `IDR1.PRIQS`: log2 of the largest PRI queue.
    pub priq_log2_max: u8,
    /// `IDR1.SSIDSIZE`: SubstreamID bits.
    pub ssid_bits: u8,
    /// `IDR1.SIDSIZE`: StreamID bits.
    pub sid_bits: u8,
    /// `IDR3.RIL`: range TLB invalidations.
    pub range_invalidation: bool,
    /// `IDR3.BBML`: break-before-make level.
    pub bbml: u8,
    /// `IDR3.FWB`: stage-2 forced write-back.
    pub fwb: bool,
    /// `IDR3.STT`: small translation tables.
    pub stt: bool,
    /// `IDR3.MPAM`.
    pub mpam: bool,
    /// `IDR3.DPT`: device permission tables.
    pub dpt: bool,
    /// `IDR3.PPS`: PASID prefix on stop-marker responses.
    pub pps: bool,
    /// `IDR3.XNX`: EL0/EL1 execute-never at stage 2.
    pub xnx: bool,
    /// `IDR3.HAD`: hierarchical attribute disable.
    pub had: bool,
    /// `IDR5.OAS`: output address size (a reserved encoding decodes as 48 bits, as Linux
    /// treats it).
    pub oas: AddressSize,
    /// `IDR5.GRAN4K`.
    pub granule_4k: bool,
    /// `IDR5.GRAN16K`.
    pub granule_16k: bool,
    /// `IDR5.GRAN64K`.
    pub granule_64k: bool,
    /// `IDR5.VAX`: virtual address size 48 (0), 52 (1) or 56 (2) bits.
    pub vax: u8,
    /// `IDR5.DS`: 52-bit addresses with 4K/16K granules.
    pub ds: bool,
    /// `IDR5.D128`: 128-bit descriptors.
    pub d128: bool,
    /// `IDR5.STALL_MAX`: outstanding stalls.
    pub stall_max: u16,
    /// `SMMU_IIDR`.
    pub iidr: Iidr,
    /// `AIDR.ArchMinorRev`: 0 = SMMUv3.0, 1 = v3.1, …
    pub arch_minor: u8,
}

impl Features {
    /// Decodes the ID registers. Every bit pattern decodes: reserved encodings become the
    /// `Reserved` variants (or, for OAS, the 48-bit default), so that probe can refuse them
    /// with a typed error rather than this function guessing.
    pub fn decode(regs: &IdRegs) -> Features {
        let [idr0, idr1, _idr2, idr3, _idr4, idr5] = regs.idr;
        let r0 = LocalRegisterCopy::<u32, IDR0::Register>::new(idr0);
        let r1 = LocalRegisterCopy::<u32, IDR1::Register>::new(idr1);
        let r3 = LocalRegisterCopy::<u32, IDR3::Register>::new(idr3);
        let r5 = LocalRegisterCopy::<u32, IDR5::Register>::new(idr5);
        let ii = LocalRegisterCopy::<u32, IIDR::Register>::new(regs.iidr);
        let ai = LocalRegisterCopy::<u32, AIDR::Register>::new(regs.aidr);
        let ttf = r0.read(IDR0::TTF);
        Features {
            stage1: r0.is_set(IDR0::S1P),
            stage2: r0.is_set(IDR0::S2P),
            aarch64_tables: ttf & 0b10 != 0,
            aarch32_tables: ttf & 0b01 != 0,
            coherent: r0.is_set(IDR0::COHACC),
            btm: r0.is_set(IDR0::BTM),
            httu: match r0.read(IDR0::HTTU) {
                0 => Httu::None,
                1 => Httu::Access,
                2 => Httu::AccessDirty,
                _ => Httu::AccessDirtyTableAf,
            },
            dormant_hint: r0.is_set(IDR0::DORMHINT),
            hyp: r0.is_set(IDR0::HYP),
            ats: r0.is_set(IDR0::ATS),
            ns1ats: r0.is_set(IDR0::NS1ATS),
            asid16: r0.is_set(IDR0::ASID16),
            msi: r0.is_set(IDR0::MSI),
            sev: r0.is_set(IDR0::SEV),
            atos: r0.is_set(IDR0::ATOS),
            pri: r0.is_set(IDR0::PRI),
            vmw: r0.is_set(IDR0::VMW),
            vmid16: r0.is_set(IDR0::VMID16),
            cd2l: r0.is_set(IDR0::CD2L),
            vatos: r0.is_set(IDR0::VATOS),
            endianness: match r0.read(IDR0::TTENDIAN) {
                0b00 => TableEndianness::Mixed,
                0b10 => TableEndianness::Little,
                0b11 => TableEndianness::Big,
                _ => TableEndianness::Reserved,
            },
            ats_recerr: r0.is_set(IDR0::ATSRECERR),
            stall_model: match r0.read(IDR0::STALL_MODEL) {
                0b00 => StallModel::Stall,
                0b01 => StallModel::NoStall,
                0b10 => StallModel::Forced,
                _ => StallModel::Reserved,
            },
            term_model_abort_only: r0.is_set(IDR0::TERM_MODEL),
            two_level_stream_table: r0.read(IDR0::ST_LVL) == 1,
            rme: r0.is_set(IDR0::RME_IMPL),
            ecmdq: r1.is_set(IDR1::ECMDQ),
            tables_preset: r1.is_set(IDR1::TABLES_PRESET),
            queues_preset: r1.is_set(IDR1::QUEUES_PRESET),
            rel: r1.is_set(IDR1::REL),
            attr_types_ovr: r1.is_set(IDR1::ATTR_TYPES_OVR),
            attr_perms_ovr: r1.is_set(IDR1::ATTR_PERMS_OVR),
            cmdq_log2_max: r1.read(IDR1::CMDQS) as u8,
            evtq_log2_max: r1.read(IDR1::EVTQS) as u8,
            priq_log2_max: r1.read(IDR1::PRIQS) as u8,
            ssid_bits: r1.read(IDR1::SSIDSIZE) as u8,
            sid_bits: r1.read(IDR1::SIDSIZE) as u8,
            range_invalidation: r3.is_set(IDR3::RIL),
            bbml: r3.read(IDR3::BBM) as u8,
            fwb: r3.is_set(IDR3::FWB),
            stt: r3.is_set(IDR3::STT),
            mpam: r3.is_set(IDR3::MPAM),
            dpt: r3.is_set(IDR3::DPT),
            pps: r3.is_set(IDR3::PPS),
            xnx: r3.is_set(IDR3::XNX),
            had: r3.is_set(IDR3::HAD),
            oas: AddressSize::decode(u64::from(r5.read(IDR5::OAS))).unwrap_or(AddressSize::Bits48),
            granule_4k: r5.is_set(IDR5::GRAN4K),
            granule_16k: r5.is_set(IDR5::GRAN16K),
            granule_64k: r5.is_set(IDR5::GRAN64K),
            vax: r5.read(IDR5::VAX) as u8,
            ds: r5.is_set(IDR5::DS),
            d128: r5.is_set(IDR5::D128),
            stall_max: r5.read(IDR5::STALL_MAX) as u16,
            iidr: Iidr {
                product_id: ii.read(IIDR::PRODUCTID) as u16,
                variant: ii.read(IIDR::VARIANT) as u8,
                revision: ii.read(IIDR::REVISION) as u8,
                implementer: ii.read(IIDR::IMPLEMENTER) as u16,
            },
            arch_minor: ai.read(AIDR::ARCHMINORREV) as u8,
        }
    }

    /// ASID width in bits (8 or 16).
    pub const fn asid_bits(&self) -> u32 {
        if self.asid16 {
            16
        } else {
            8
        }
    }

    /// VMID width in bits (8 or 16).
    pub const fn vmid_bits(&self) -> u32 {
        if self.vmid16 {
            16
        } else {
            8
        }
    }

    /// Output address size in bits.
    pub const fn oas_bits(&self) -> u32 {
        self.oas.bits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_a_grace_like_smmu() {
        // IDR0: S1P, S2P, TTF=AArch64, COHACC, BTM, HTTU=2, Hyp, ATS, ASID16, MSI, SEV, PRI,
        // VMID16, CD2L, ST_LEVEL=2-level, STALL_MODEL=0b01, TTENDIAN=LE.
        let idr0 = 0b11
            | (0b10 << 2)
            | (1 << 4)
            | (1 << 5)
            | (2 << 6)
            | (1 << 9)
            | (1 << 10)
            | (1 << 12)
            | (1 << 13)
            | (1 << 14)
            | (1 << 16)
            | (1 << 18)
            | (1 << 19)
            | (0b10 << 21)
            | (0b01 << 24)
            | (1 << 27);
        // IDR1: SIDSIZE 20, SSIDSIZE 20, PRIQS 19, EVENTQS 19, CMDQS 19, ATTR_TYPES_OVR.
        let (sid_bits, ssid_bits, log2_queue) = (20u32, 20u32, 19u32);
        let idr1 = sid_bits
            | (ssid_bits << 6)
            | (log2_queue << 11)
            | (log2_queue << 16)
            | (log2_queue << 21)
            | (1 << 27);
        let idr3 = 1 << 10; // RIL
        let idr5 = 0b101 | (1 << 4) | (1 << 6) | (0x20 << 16); // OAS 48, 4K, 64K, STALL_MAX 32
        let f = Features::decode(&IdRegs {
            idr: [idr0, idr1, 0, idr3, 0, idr5],
            iidr: 0x4870_043b, // MMU-700, r0p0
            aidr: 0x02,
        });
        assert!(f.stage1 && f.stage2 && f.aarch64_tables && !f.aarch32_tables);
        assert!(f.coherent && f.btm && f.hyp && f.ats && f.msi && f.sev && f.pri);
        assert_eq!(f.httu, Httu::AccessDirty);
        assert_eq!((f.asid_bits(), f.vmid_bits()), (16, 16));
        assert!(f.cd2l && f.two_level_stream_table);
        assert_eq!(f.endianness, TableEndianness::Little);
        assert_eq!(f.stall_model, StallModel::NoStall);
        assert_eq!((f.sid_bits, f.ssid_bits), (20, 20));
        assert_eq!(
            (f.cmdq_log2_max, f.evtq_log2_max, f.priq_log2_max),
            (19, 19, 19)
        );
        assert!(f.attr_types_ovr && !f.attr_perms_ovr);
        assert!(f.range_invalidation);
        assert_eq!(f.oas_bits(), 48);
        assert!(f.granule_4k && !f.granule_16k && f.granule_64k);
        assert_eq!(f.stall_max, 32);
        assert_eq!(f.iidr.implementer, Iidr::IMPLEMENTER_ARM);
        assert_eq!(f.iidr.product_id, Iidr::PRODUCT_MMU_700);
        assert_eq!((f.iidr.variant, f.iidr.revision), (0, 0));
        assert_eq!(f.arch_minor, 2);
    }

    #[test]
    fn reserved_encodings_decode_to_explicit_variants() {
        let f = Features::decode(&IdRegs {
            idr: [(0b01 << 21) | (0b11 << 24), 0, 0, 0, 0, 0b111 + 1],
            iidr: 0,
            aidr: 0,
        });
        assert_eq!(f.endianness, TableEndianness::Reserved);
        assert_eq!(f.stall_model, StallModel::Reserved);
        // OAS 0b000 with bit 3 set: OAS is \[2:0\], so this is 32 bits, not a reserved value.
        assert_eq!(f.oas_bits(), 32);
        let f = Features::decode(&IdRegs {
            idr: [0, 0, 0, 0, 0, 0b111],
            iidr: 0,
            aidr: 0,
        });
        assert_eq!(f.oas_bits(), 56);
        assert!(!f.aarch64_tables && !f.stage1 && !f.stage2);
    }
}
