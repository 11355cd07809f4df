//! The reports in plain words: one line per event, page request and global error.

use super::*;

/// One line in plain words, for a kernel log: the specification's event name, what it means,
/// the StreamID and SubstreamID, the address and, for a translation-time fault, the access,
/// the stage and the fault's class (§7.3).
///
/// ```
/// use smmu::arch::event::{Event, Fault, FaultClass, StreamRef, TranslationFault};
/// use smmu::evtq::EventReport;
///
/// let fault = Fault {
///     stream: StreamRef { sid: 0x21, ssid: None },
///     stall: false, stag: 0, privileged: false, instruction: false, read: false,
///     stage2: false, class: FaultClass::Input, tt_read: false, input_addr: 0x9000,
/// };
/// let report = EventReport::Event(Event::Translation(TranslationFault { fault, ipa: 0 }));
/// assert_eq!(
///     report.to_string(),
///     "F_TRANSLATION (translation fault): StreamID 0x21, write at 0x9000, stage 1, \
///      class: input address"
/// );
/// ```
impl fmt::Display for EventReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EventReport::Event(e) => display_event(e, f),
            EventReport::Undecodable { words, error } => write!(
                f,
                "undecodable event record (event number {:#04x}): {error}",
                words.first().map_or(0, |w| w & 0xff)
            ),
            EventReport::Overflow => {
                f.write_str("event queue overflow: the SMMU discarded event records")
            }
        }
    }
}

/// The plain-words meaning of each event (§7.3.2–§7.3.22).
fn event_meaning(e: &Event) -> &'static str {
    match e {
        Event::UnsupportedUpstream { .. } => "unsupported upstream transaction",
        Event::BadStreamId(_) => "StreamID out of range of the stream table",
        Event::SteFetch(_) => "STE fetch failed",
        Event::BadSte(_) => "invalid or ILLEGAL STE",
        Event::BadAtsTreq { .. } => "ATS translation request the STE does not allow",
        Event::StreamDisabled(_) => "transaction without SubstreamID refused by its STE",
        Event::TranslForbidden { .. } => "translated (ATS) transaction on a bypassing stream",
        Event::BadSubstreamId(_) => "SubstreamID out of range of the CD table",
        Event::CdFetch(_) => "CD fetch failed",
        Event::BadCd(_) => "invalid or ILLEGAL CD",
        Event::WalkExternalAbort { .. } => "external abort on a translation table walk",
        Event::Translation(_) => "translation fault",
        Event::AddressSize(_) => "address size fault",
        Event::Access(_) => "access flag fault",
        Event::Permission(_) => "permission fault",
        Event::TlbConflict(_) => "TLB conflict",
        Event::CfgConflict { .. } => "configuration cache conflict",
        Event::PageRequest(_) => "ATS page request",
        Event::VmsFetch(_) => "VMS fetch failed",
        Event::ImplementationDefined { .. } => "IMPLEMENTATION DEFINED event",
        // `Event` is non-exhaustive: a later event the driver decodes gets its name only.
        #[allow(unreachable_patterns)]
        _ => "event",
    }
}

fn access(read: bool, instruction: bool) -> &'static str {
    match (instruction, read) {
        (true, _) => "instruction fetch",
        (false, true) => "read",
        (false, false) => "write",
    }
}

fn display_fault(
    fault: &crate::arch::event::Fault,
    ipa: Option<u64>,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    write!(
        f,
        ", {} at {:#x}, stage {}",
        access(fault.read, fault.instruction),
        fault.input_addr,
        if fault.stage2 { 2 } else { 1 }
    )?;
    if let Some(ipa) = ipa.filter(|_| fault.stage2) {
        write!(f, " (IPA {ipa:#x})")?;
    }
    write!(f, ", class: {}", fault.class.describe())?;
    if fault.stall {
        write!(f, ", stalled (STAG {:#x})", fault.stag)?;
    }
    Ok(())
}

fn display_event(e: &Event, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let stream = e.stream();
    write!(
        f,
        "{} ({}): StreamID {:#x}",
        e.name(),
        event_meaning(e),
        stream.sid
    )?;
    if let Some(ssid) = stream.ssid {
        write!(f, ", SubstreamID {ssid:#x}")?;
    }
    match e {
        Event::UnsupportedUpstream {
            reason,
            read,
            instruction,
            input_addr,
            ..
        } => write!(
            f,
            ", {} at {input_addr:#x}, reason {reason:#x}",
            access(*read, *instruction)
        ),
        Event::BadAtsTreq { input_addr, .. } => write!(f, ", address {input_addr:#x}"),
        Event::TranslForbidden {
            read, input_addr, ..
        } => write!(f, ", {} at {input_addr:#x}", access(*read, false)),
        Event::SteFetch(x) | Event::CdFetch(x) | Event::VmsFetch(x) => {
            write!(
                f,
                ", fetch address {:#x}, reason {:#x}",
                x.fetch_addr, x.reason
            )
        }
        Event::WalkExternalAbort { fault, fetch_addr } => {
            display_fault(fault, None, f)?;
            write!(f, ", descriptor at {fetch_addr:#x}")
        }
        Event::Translation(t)
        | Event::AddressSize(t)
        | Event::Access(t)
        | Event::Permission(t)
        | Event::TlbConflict(t) => display_fault(&t.fault, Some(t.ipa), f),
        Event::CfgConflict { reason, .. } => write!(f, ", reason {reason:#x}"),
        Event::PageRequest(p) => write!(f, ", address {:#x}", p.addr),
        Event::ImplementationDefined { id, .. } => write!(f, ", event number {id:#04x}"),
        _ => Ok(()),
    }
}

/// One line in plain words: a page request with its stream, address and access, or the
/// overflow (chapter 8).
impl fmt::Display for PriReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = match self {
            PriReport::Request(r) => r,
            PriReport::Overflow => {
                return f.write_str("PRI queue overflow: the SMMU discarded page requests")
            }
        };
        let what = if r.is_stop_marker() {
            "stop marker"
        } else {
            "page request"
        };
        write!(f, "{what}: StreamID {:#x}", r.sid)?;
        if let Some(ssid) = r.ssid {
            write!(f, ", SubstreamID {ssid:#x}")?;
        }
        write!(f, ", address {:#x}, access ", r.addr)?;
        let mut any = false;
        for (on, c) in [(r.read, 'r'), (r.write, 'w'), (r.exec, 'x')] {
            if on {
                write!(f, "{c}")?;
                any = true;
            }
        }
        if !any {
            f.write_str("none")?;
        }
        if r.privileged {
            f.write_str(" (privileged)")?;
        }
        write!(f, ", PRG index {}", r.prg_index)?;
        if r.last {
            f.write_str(", last")?;
        }
        Ok(())
    }
}

/// One line in plain words: the active global errors by name (§7.5), which were
/// acknowledged, and service failure.
impl fmt::Display for GerrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |f: &mut fmt::Formatter<'_>, set: GlobalErrors| -> fmt::Result {
            if set.is_empty() {
                return f.write_str("none");
            }
            for (i, (name, _)) in set.iter_names().enumerate() {
                if i > 0 {
                    f.write_str(" ")?;
                }
                f.write_str(name)?;
            }
            Ok(())
        };
        if self.active.is_empty() && self.reserved == 0 {
            return f.write_str("no global error");
        }
        f.write_str("global errors: ")?;
        names(f, self.active)?;
        f.write_str("; acknowledged: ")?;
        names(f, self.acknowledged)?;
        if self.service_failure {
            f.write_str("; service failure mode: the SMMU stopped until reset")?;
        }
        if self.command_queue_error {
            f.write_str("; the command queue is stopped")?;
        }
        if self.reserved != 0 {
            write!(f, "; reserved bits {:#x}", self.reserved)?;
        }
        Ok(())
    }
}
