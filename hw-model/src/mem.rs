//! Sparse, bounded physical memory (SPEC M5) with encrypted regions and fault injection, or a
//! window of it backed by a [`HostRam`] arena.

use crate::host::HostRam;
pub(crate) use crate::phys::{MemError, PAGE};
use crate::util::{splitmix64, FastMap};
use core::fmt;

#[derive(Clone, Debug)]
pub(crate) struct Region {
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) key: u64,
}

impl Region {
    fn overlaps(&self, pa: u64, len: u64) -> bool {
        pa < self.end && pa.saturating_add(len) > self.start
    }
}

/// Sparse physical memory: 4 KiB pages allocated on first write, zero until written. With a
/// host arena, the arena's window `[host_base, host_end)` is backed by it instead (no limit).
#[derive(Clone)]
pub(crate) struct Memory {
    pages: FastMap<u64, Box<[u8; PAGE as usize]>>,
    host: Option<HostRam>,
    host_base: u64,
    host_end: u64,
    ram: Vec<Region>,
    limit: u64,
    pub(crate) encrypted: Vec<Region>,
    pub(crate) fetch_faults: Vec<Region>,
    pub(crate) write_faults: Vec<Region>,
    /// Ranges the platform freed (`Model::mark_freed`): start → end, disjoint and merged.
    freed: std::collections::BTreeMap<u64, u64>,
    /// A non-coherent SMMU's view (SPEC K17): DMA-pool pages as the point of coherency holds
    /// them, which CPU stores reach only when cleaned. `None`: the SMMU snoops the CPU's view.
    pub(crate) poc: Option<FastMap<u64, Box<[u8; PAGE as usize]>>>,
    /// Granule protection (§3.25) of the SMMU's and devices' accesses, in this PA space.
    pub(crate) gpc: Option<(crate::rme::Gpt, crate::rme::Pas)>,
}

impl core::fmt::Debug for Memory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Memory")
            .field("pages_backed", &self.pages.len())
            .field("host", &self.host)
            .field("host_base", &self.host_base)
            .field("host_end", &self.host_end)
            .field("ram", &self.ram)
            .field("limit", &self.limit)
            .field("encrypted", &self.encrypted)
            .field("fetch_faults", &self.fetch_faults)
            .field("write_faults", &self.write_faults)
            .field("freed", &self.freed)
            .field("poc_pages", &self.poc.as_ref().map(FastMap::len))
            .field("gpc", &self.gpc.as_ref().map(|g| g.1))
            .finish()
    }
}

impl Memory {
    pub(crate) fn new(ram: &[(u64, u64)], limit: u64) -> Self {
        Self {
            pages: FastMap::default(),
            host: None,
            host_base: 0,
            host_end: 0,
            ram: ram
                .iter()
                .map(|&(s, len)| Region {
                    start: s,
                    end: s.saturating_add(len),
                    key: 0,
                })
                .collect(),
            limit,
            encrypted: Vec::new(),
            fetch_faults: Vec::new(),
            write_faults: Vec::new(),
            freed: std::collections::BTreeMap::new(),
            poc: None,
            gpc: None,
        }
    }

    /// Puts `[pa, pa + len)` under the point-of-coherency view with its current (CPU) contents
    /// (a fresh, zeroed DMA allocation). No effect on a coherent memory.
    pub(crate) fn poc_track(&mut self, pa: u64, len: u64) {
        if self.poc.is_none() || len == 0 {
            return;
        }
        let mut page = pa & !(PAGE - 1);
        let end = pa.saturating_add(len);
        while page < end {
            let mut b = Box::new([0u8; PAGE as usize]);
            let _ = self.read(page, &mut b[..]);
            if let Some(poc) = self.poc.as_mut() {
                poc.insert(page, b);
            }
            page = match page.checked_add(PAGE) {
                Some(p) => p,
                None => break,
            };
        }
    }

    /// Clean to the point of coherency: the 64-byte lines covering `[pa, pa + len)` take the
    /// CPU's contents where they are under the PoC view.
    pub(crate) fn poc_clean(&mut self, pa: u64, len: u64) {
        let Some(poc) = self.poc.as_ref() else {
            return;
        };
        if len == 0 {
            return;
        }
        let lo = pa & !63;
        let hi = pa.saturating_add(len).saturating_add(63) & !63;
        // Only pages under the view matter: step through the range or through the view,
        // whichever is shorter, so a huge range costs no more than the view's size.
        let span_pages = (hi - lo) / PAGE + 1;
        let pages: Vec<u64> = if span_pages > poc.len() as u64 {
            let mut v: Vec<u64> = poc
                .keys()
                .copied()
                .filter(|&p| p.saturating_add(PAGE) > lo && p < hi)
                .collect();
            v.sort_unstable();
            v
        } else {
            (0..span_pages)
                .map(|i| (lo & !(PAGE - 1)) + i * PAGE)
                .filter(|p| poc.contains_key(p))
                .collect()
        };
        for page in pages {
            let a = lo.max(page);
            let b = hi.min(page + PAGE);
            if a >= b {
                continue;
            }
            let mut buf = vec![0u8; (b - a) as usize];
            if self.read(a, &mut buf).is_ok() {
                if let Some(p) = self.poc.as_mut().and_then(|m| m.get_mut(&page)) {
                    let off = (a - page) as usize;
                    p[off..off + buf.len()].copy_from_slice(&buf);
                }
            }
        }
    }

    /// Replaces the bytes of `buf` (read from `pa` in the CPU view) that lie in pages under the
    /// PoC view with what the point of coherency holds.
    fn poc_overlay(&self, pa: u64, buf: &mut [u8]) {
        let Some(poc) = self.poc.as_ref() else {
            return;
        };
        let mut done = 0usize;
        while done < buf.len() {
            let a = pa + done as u64;
            let page = a & !(PAGE - 1);
            let off = (a - page) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            if let Some(p) = poc.get(&page) {
                buf[done..done + n].copy_from_slice(&p[off..off + n]);
            }
            done += n;
        }
    }

    /// A device write reaches the point of coherency as well as the CPU's view.
    fn poc_write(&mut self, pa: u64, data: &[u8]) {
        let Some(poc) = self.poc.as_mut() else {
            return;
        };
        let mut done = 0usize;
        while done < data.len() {
            let a = pa + done as u64;
            let page = a & !(PAGE - 1);
            let off = (a - page) as usize;
            let n = (PAGE as usize - off).min(data.len() - done);
            if let Some(p) = poc.get_mut(&page) {
                p[off..off + n].copy_from_slice(&data[done..done + n]);
            }
            done += n;
        }
    }

    /// RAM `[base, base + host.len_bytes())` backed by `host`; `mem_limit` does not apply.
    pub(crate) fn with_host(base: u64, host: HostRam) -> Self {
        let end = base.saturating_add(host.len_bytes());
        let mut m = Self::new(&[(base, end - base)], 0);
        m.host_base = base;
        m.host_end = end;
        m.host = Some(host);
        m
    }

    /// The host arena and the arena offset of `[pa, pa + len)`, if the range lies inside it.
    #[inline]
    fn host_at(&self, pa: u64, len: u64) -> Option<(&HostRam, u64)> {
        let h = self.host.as_ref()?;
        let end = pa.checked_add(len)?;
        (pa >= self.host_base && end <= self.host_end).then(|| (h, pa - self.host_base))
    }

    /// Zeroes `[pa, pa + len)` where it lies in the host arena (a fresh DMA allocation).
    pub(crate) fn zero_host(&self, pa: u64, len: u64) {
        if let Some((h, off)) = self.host_at(pa, len) {
            let _ = h.zero(off, len);
        }
    }

    pub(crate) fn is_ram(&self, pa: u64, len: u64) -> bool {
        let Some(end) = pa.checked_add(len) else {
            return false;
        };
        self.ram.iter().any(|r| pa >= r.start && end <= r.end)
    }

    /// Bytes of RAM backed: the sparse pages written so far plus the whole host arena.
    pub(crate) fn bytes_backed(&self) -> u64 {
        self.pages.len() as u64 * PAGE + self.host.as_ref().map_or(0, HostRam::len_bytes)
    }

    /// Plain read (CPU view): no fault injection, no decryption garbage.
    pub(crate) fn read(&self, pa: u64, buf: &mut [u8]) -> Result<(), MemError> {
        if !self.is_ram(pa, buf.len() as u64) {
            return Err(MemError::NotRam { pa });
        }
        if let Some((h, off)) = self.host_at(pa, buf.len() as u64) {
            let _ = h.read_bytes(off, buf);
            return Ok(());
        }
        let mut done = 0usize;
        while done < buf.len() {
            let a = pa + done as u64;
            let page = a & !(PAGE - 1);
            let off = (a - page) as usize;
            let n = (PAGE as usize - off).min(buf.len() - done);
            match self.pages.get(&page) {
                Some(p) => buf[done..done + n].copy_from_slice(&p[off..off + n]),
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(())
    }

    /// Plain write (CPU view).
    pub(crate) fn write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        if !self.is_ram(pa, data.len() as u64) {
            return Err(MemError::NotRam { pa });
        }
        if let Some((h, off)) = self.host_at(pa, data.len() as u64) {
            let _ = h.write_bytes(off, data);
            return Ok(());
        }
        // Check the limit before touching anything, so that a failed write changes nothing.
        let first = pa & !(PAGE - 1);
        let last = (pa + data.len().max(1) as u64 - 1) & !(PAGE - 1);
        let mut new_pages = 0u64;
        let mut p = first;
        loop {
            if !self.pages.contains_key(&p) {
                new_pages += 1;
            }
            if p >= last {
                break;
            }
            p += PAGE;
        }
        if (self.pages.len() as u64 + new_pages) * PAGE > self.limit {
            return Err(MemError::LimitExceeded { limit: self.limit });
        }
        let mut done = 0usize;
        while done < data.len() {
            let a = pa + done as u64;
            let page = a & !(PAGE - 1);
            let off = (a - page) as usize;
            let n = (PAGE as usize - off).min(data.len() - done);
            let pg = self
                .pages
                .entry(page)
                .or_insert_with(|| Box::new([0u8; PAGE as usize]));
            pg[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
        Ok(())
    }

    /// Records a range the platform freed, merged with the ranges it touches.
    pub(crate) fn mark_freed(&mut self, pa: u64, len: u64) {
        let (mut start, mut end) = (pa, pa.saturating_add(len));
        if let Some((&s, &e)) = self.freed.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        let touching: Vec<u64> = self.freed.range(start..=end).map(|(&s, _)| s).collect();
        for s in touching {
            if let Some(e) = self.freed.remove(&s) {
                end = end.max(e);
            }
        }
        self.freed.insert(start, end);
    }

    /// Whether `pa` lies in a range the platform freed.
    #[inline]
    pub(crate) fn is_freed(&self, pa: u64) -> bool {
        !self.freed.is_empty()
            && self
                .freed
                .range(..=pa)
                .next_back()
                .is_some_and(|(_, &e)| pa < e)
    }

    /// Fast aligned 64-bit plain read.
    #[inline]
    pub(crate) fn read_u64(&self, pa: u64) -> Result<u64, MemError> {
        if pa & 7 != 0 || !self.is_ram(pa, 8) {
            let mut b = [0u8; 8];
            self.read(pa, &mut b)?;
            return Ok(u64::from_le_bytes(b));
        }
        if let Some((h, off)) = self.host_at(pa, 8) {
            return Ok(h.load_u64(off).unwrap_or(0));
        }
        let page = pa & !(PAGE - 1);
        let off = (pa - page) as usize;
        Ok(match self.pages.get(&page) {
            Some(p) => u64::from_le_bytes(p[off..off + 8].try_into().unwrap_or([0; 8])),
            None => 0,
        })
    }

    /// Granule protection check of an SMMU or device access (§3.25): a granule assigned to
    /// another PA space aborts the access like an External abort.
    #[inline]
    fn gpc_check(&self, pa: u64, len: u64) -> Result<(), MemError> {
        match &self.gpc {
            Some((gpt, pas)) => gpt
                .check(pa, len, *pas, true)
                .map_err(|pa| MemError::GranuleProtection { pa }),
            None => Ok(()),
        }
    }

    /// Read by the SMMU or a device: injected faults apply; encrypted regions read with the wrong
    /// attribute return a deterministic garbage stream.
    pub(crate) fn dev_read(
        &self,
        pa: u64,
        buf: &mut [u8],
        encrypted_attr: bool,
    ) -> Result<(), MemError> {
        self.gpc_check(pa, buf.len() as u64)?;
        if let Some(f) = self
            .fetch_faults
            .iter()
            .find(|r| r.overlaps(pa, buf.len() as u64))
        {
            return Err(MemError::Injected {
                pa: pa.max(f.start),
            });
        }
        self.read(pa, buf)?;
        self.poc_overlay(pa, buf);
        self.apply_garbage(pa, buf, encrypted_attr);
        Ok(())
    }

    pub(crate) fn apply_garbage(&self, pa: u64, buf: &mut [u8], encrypted_attr: bool) {
        if self.encrypted.is_empty() {
            return;
        }
        let len = buf.len() as u64;
        for r in &self.encrypted {
            if !r.overlaps(pa, len) {
                continue;
            }
            for (i, b) in buf.iter_mut().enumerate() {
                let a = pa + i as u64;
                if a >= r.start && a < r.end && !encrypted_attr {
                    let word = splitmix64(r.key ^ (a & !7));
                    *b = (word >> ((a & 7) * 8)) as u8;
                }
            }
        }
    }

    #[inline]
    pub(crate) fn dev_read_u64(&self, pa: u64, encrypted_attr: bool) -> Result<u64, MemError> {
        if self.fetch_faults.is_empty()
            && self.encrypted.is_empty()
            && self.poc.is_none()
            && self.gpc.is_none()
        {
            return self.read_u64(pa);
        }
        let mut b = [0u8; 8];
        self.dev_read(pa, &mut b, encrypted_attr)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Two consecutive 64-bit device reads of a 16-byte aligned slot (a command).
    #[inline]
    pub(crate) fn dev_read_pair(
        &self,
        pa: u64,
        encrypted_attr: bool,
    ) -> Result<[u64; 2], MemError> {
        if pa & 15 == 0
            && self.fetch_faults.is_empty()
            && self.encrypted.is_empty()
            && self.poc.is_none()
            && self.gpc.is_none()
            && self.is_ram(pa, 16)
        {
            if let Some((h, off)) = self.host_at(pa, 16) {
                return Ok([
                    h.load_u64(off).unwrap_or(0),
                    h.load_u64(off + 8).unwrap_or(0),
                ]);
            }
            let page = pa & !(PAGE - 1);
            let off = (pa - page) as usize;
            return Ok(match self.pages.get(&page) {
                Some(p) => [
                    u64::from_le_bytes(p[off..off + 8].try_into().unwrap_or([0; 8])),
                    u64::from_le_bytes(p[off + 8..off + 16].try_into().unwrap_or([0; 8])),
                ],
                None => [0, 0],
            });
        }
        Ok([
            self.dev_read_u64(pa, encrypted_attr)?,
            self.dev_read_u64(pa + 8, encrypted_attr)?,
        ])
    }

    /// Write by the SMMU or a device: injected write faults apply.
    pub(crate) fn dev_write(&mut self, pa: u64, data: &[u8]) -> Result<(), MemError> {
        self.gpc_check(pa, data.len() as u64)?;
        if let Some(f) = self
            .write_faults
            .iter()
            .find(|r| r.overlaps(pa, data.len() as u64))
        {
            return Err(MemError::Injected {
                pa: pa.max(f.start),
            });
        }
        self.write(pa, data)?;
        self.poc_write(pa, data);
        Ok(())
    }
}
