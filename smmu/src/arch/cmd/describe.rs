//! Commands in words: each opcode's name, the fields it has, and what a field's value means
//! (for decoders: `smmuctl decode cmd`, the model's logs).

use super::*;

/// The specification's name of an opcode, `None` for a reserved one.
pub fn opcode_name(op: u8) -> Option<&'static str> {
    use opcode::*;
    Some(match op {
        PREFETCH_CFG => "CMD_PREFETCH_CONFIG",
        PREFETCH_ADDR => "CMD_PREFETCH_ADDR",
        CFGI_STE => "CMD_CFGI_STE",
        CFGI_STE_RANGE => "CMD_CFGI_STE_RANGE",
        CFGI_CD => "CMD_CFGI_CD",
        CFGI_CD_ALL => "CMD_CFGI_CD_ALL",
        CFGI_VMS_PIDM => "CMD_CFGI_VMS_PIDM",
        TLBI_NH_ALL => "CMD_TLBI_NH_ALL",
        TLBI_NH_ASID => "CMD_TLBI_NH_ASID",
        TLBI_NH_VA => "CMD_TLBI_NH_VA",
        TLBI_NH_VAA => "CMD_TLBI_NH_VAA",
        TLBI_EL3_ALL => "CMD_TLBI_EL3_ALL",
        TLBI_EL3_VA => "CMD_TLBI_EL3_VA",
        TLBI_EL2_ALL => "CMD_TLBI_EL2_ALL",
        TLBI_EL2_ASID => "CMD_TLBI_EL2_ASID",
        TLBI_EL2_VA => "CMD_TLBI_EL2_VA",
        TLBI_EL2_VAA => "CMD_TLBI_EL2_VAA",
        TLBI_S12_VMALL => "CMD_TLBI_S12_VMALL",
        TLBI_S2_IPA => "CMD_TLBI_S2_IPA",
        TLBI_NSNH_ALL => "CMD_TLBI_NSNH_ALL",
        ATC_INV => "CMD_ATC_INV",
        PRI_RESP => "CMD_PRI_RESP",
        RESUME => "CMD_RESUME",
        STALL_TERM => "CMD_STALL_TERM",
        CMD_SYNC => "CMD_SYNC",
        TLBI_S_EL2_ALL => "CMD_TLBI_S_EL2_ALL",
        TLBI_S_EL2_ASID => "CMD_TLBI_S_EL2_ASID",
        TLBI_S_EL2_VA => "CMD_TLBI_S_EL2_VA",
        TLBI_S_EL2_VAA => "CMD_TLBI_S_EL2_VAA",
        TLBI_S_S12_VMALL => "CMD_TLBI_S_S12_VMALL",
        TLBI_S_S2_IPA => "CMD_TLBI_S_S2_IPA",
        TLBI_SNH_ALL => "CMD_TLBI_SNH_ALL",
        DPTI_ALL => "CMD_DPTI_ALL",
        DPTI_PA => "CMD_DPTI_PA",
        _ => return None,
    })
}

/// The parameter fields of a command with this opcode, for printers (opcode first).
pub fn fields_of(op: u8, range_is_all: bool) -> &'static [Field] {
    use fields::*;
    use opcode::*;
    const VA: &[Field] = &[
        OPCODE, NUM, SCALE, VMID, ASID, LEAF, TTL128, TTL, TG, ADDRESS,
    ];
    const VAA: &[Field] = &[OPCODE, NUM, SCALE, VMID, LEAF, TTL128, TTL, TG, ADDRESS];
    const EL_VA: &[Field] = &[OPCODE, NUM, SCALE, ASID, LEAF, TTL128, TTL, TG, ADDRESS];
    const EL_VAA: &[Field] = &[OPCODE, NUM, SCALE, LEAF, TTL128, TTL, TG, ADDRESS];
    const S2: &[Field] = &[OPCODE, NUM, SCALE, VMID, LEAF, TTL128, TTL, TG, IPA];
    match op {
        PREFETCH_CFG | CFGI_CD_ALL | STALL_TERM => &[OPCODE, STREAM_ID],
        PREFETCH_ADDR => &[OPCODE, STREAM_ID, PREFETCH_SIZE, ADDRESS],
        CFGI_STE => &[OPCODE, STREAM_ID, LEAF],
        CFGI_STE_RANGE if range_is_all => &[OPCODE, RANGE],
        CFGI_STE_RANGE => &[OPCODE, STREAM_ID, RANGE],
        CFGI_CD => &[OPCODE, SUBSTREAM_ID, STREAM_ID, LEAF],
        CFGI_VMS_PIDM | TLBI_NH_ALL | TLBI_S12_VMALL | TLBI_S_S12_VMALL => &[OPCODE, VMID],
        TLBI_NH_ASID => &[OPCODE, VMID, ASID],
        TLBI_NH_VA => VA,
        TLBI_NH_VAA => VAA,
        TLBI_EL3_VA | TLBI_EL2_VAA | TLBI_S_EL2_VAA => EL_VAA,
        TLBI_EL2_ASID | TLBI_S_EL2_ASID => &[OPCODE, ASID],
        TLBI_EL2_VA | TLBI_S_EL2_VA => EL_VA,
        TLBI_S2_IPA | TLBI_S_S2_IPA => S2,
        ATC_INV => &[
            OPCODE,
            GLOBAL,
            SSV,
            SUBSTREAM_ID,
            STREAM_ID,
            ATC_SIZE,
            ADDRESS,
        ],
        PRI_RESP => &[
            OPCODE,
            SSV,
            SUBSTREAM_ID,
            STREAM_ID,
            PRG_INDEX,
            PRI_RESPONSE,
        ],
        RESUME => &[OPCODE, RESUME_RESP, STREAM_ID, STAG],
        CMD_SYNC => &[OPCODE, CS, MSH, MSI_ATTR, MSI_DATA, MSI_ADDRESS],
        _ => &[OPCODE],
    }
}

/// What a command field's value means, where the field is an enumeration (for printers).
pub fn describe_field(op: u8, field: &Field, value: u64) -> Option<&'static str> {
    use fields::*;
    let d = |r: Result<&'static str, DecodeError>| Some(r.unwrap_or("reserved"));
    match field.name {
        n if n == OPCODE.name => opcode_name(value as u8).or(Some("reserved opcode")),
        n if n == TG.name => d(TlbiGranule::decode(value).map(TlbiGranule::describe)),
        n if n == CS.name && op == opcode::CMD_SYNC => {
            d(SyncSignal::decode(value).map(SyncSignal::describe))
        }
        n if n == PRI_RESPONSE.name && op == opcode::PRI_RESP => {
            d(PriResponse::decode(value).map(PriResponse::describe))
        }
        n if n == RESUME_RESP.name && op == opcode::RESUME => {
            d(ResumeAction::decode(value).map(ResumeAction::describe))
        }
        _ => None,
    }
}
