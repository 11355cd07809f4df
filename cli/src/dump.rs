//! The crashed kernel's memory as a dump holds it: raw files at physical addresses
//! (`--mem BASE:FILE`) or the `PT_LOAD` segments of an ELF core (`--vmcore FILE`).
//!
//! Files are read on demand with positioned reads through a small block cache, never loaded
//! whole, so a 2 GiB sparse file or a large vmcore costs the blocks the validator touches and a
//! fixed amount of memory. Regions that touch end to start are one range of memory: a read
//! that crosses from one file into the next succeeds. A file in a format the tool can name but
//! not read as raw memory (an ELF core, makedumpfile's compressed formats) is refused with a
//! hint, rather than misread.

use std::cell::RefCell;
use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use object::elf;
use object::read::elf::{FileHeader as _, ProgramHeader as _};
use object::read::ReadCache;
use object::ReadRef as _;
use smmu_kdump::{MemFault, OldMemory};

/// Why a dump could not be opened (a usage error: exit status 2).
#[derive(Debug)]
pub(crate) struct DumpError(pub(crate) String);

/// One range of physical memory backed by part of a file (or zeros, past an ELF segment's
/// file size).
#[derive(Clone, Debug)]
struct Segment {
    /// First physical address.
    base: u64,
    /// Bytes of physical memory the segment covers.
    len: u64,
    /// Index into [`Dump::files`].
    file: usize,
    /// Offset of `base` in the file.
    offset: u64,
    /// Bytes present in the file; the rest of `len` reads as zero (ELF `p_memsz` > `p_filesz`).
    file_len: u64,
}

/// The block size of the read cache.
const BLOCK: u64 = 64 << 10;
/// Blocks kept: 16 × 64 KiB = 1 MiB, whatever the dump's size.
const CACHED_BLOCKS: usize = 16;

/// A cached block: (file, block index) and its bytes.
type Block = ((usize, u64), Vec<u8>);

/// The dumped memory.
pub(crate) struct Dump {
    files: Vec<(PathBuf, File)>,
    /// Sorted by base, non-overlapping.
    segments: Vec<Segment>,
    /// Most recently used first.
    cache: RefCell<Vec<Block>>,
}

/// What a file's first bytes say it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileKind {
    Elf,
    /// makedumpfile's compressed kdump format ("KDUMP   ") or the diskdump it extends.
    KdumpCompressed,
    /// makedumpfile's flattened format (`-F`), for streaming over a network.
    Flattened,
    Raw,
}

fn kind_of(head: &[u8]) -> FileKind {
    if head.starts_with(b"\x7fELF") {
        FileKind::Elf
    } else if head.starts_with(b"KDUMP   ") || head.starts_with(b"DISKDUMP") {
        FileKind::KdumpCompressed
    } else if head.starts_with(b"makedumpfile") {
        FileKind::Flattened
    } else {
        FileKind::Raw
    }
}

fn open(path: &Path) -> Result<(File, u64, FileKind), DumpError> {
    let file = File::open(path)
        .map_err(|e| DumpError(format!("cannot open '{}': {e}", path.display())))?;
    let len = file
        .metadata()
        .map_err(|e| DumpError(format!("cannot read '{}': {e}", path.display())))?
        .len();
    let mut head = [0u8; 16];
    let n = read_up_to(&file, 0, &mut head)
        .map_err(|e| DumpError(format!("cannot read '{}': {e}", path.display())))?;
    Ok((file, len, kind_of(&head[..n])))
}

fn read_up_to(file: &File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        let Some(rest) = buf.get_mut(done..) else {
            break;
        };
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

const COMPRESSED_HINT: &str = "it is in makedumpfile's compressed kdump format, which stores \
     pages compressed and cannot be read as memory; write an ELF dump instead \
     (`makedumpfile -E -d 31 /proc/vmcore dump.elf`, or copy /proc/vmcore itself) and pass it \
     with --vmcore";
const FLATTENED_HINT: &str = "it is in makedumpfile's flattened format (-F); rebuild it with \
     `makedumpfile -R dump.elf < FILE` (after -E) and pass it with --vmcore";

impl Dump {
    /// An empty dump; add regions with [`Dump::add_raw`] and [`Dump::add_vmcore`], then
    /// [`Dump::seal`].
    pub(crate) fn new() -> Self {
        Self {
            files: Vec::new(),
            segments: Vec::new(),
            cache: RefCell::new(Vec::new()),
        }
    }

    /// A raw little-endian memory image of `path` at physical address `base`.
    pub(crate) fn add_raw(&mut self, base: u64, path: &Path) -> Result<(), DumpError> {
        let (file, len, kind) = open(path)?;
        let name = path.display();
        match kind {
            FileKind::Raw => {}
            FileKind::Elf => {
                return Err(DumpError(format!(
                    "'{name}' is an ELF file (a vmcore?), not raw memory: pass it with --vmcore"
                )))
            }
            FileKind::KdumpCompressed => {
                return Err(DumpError(format!("'{name}': {COMPRESSED_HINT}")))
            }
            FileKind::Flattened => return Err(DumpError(format!("'{name}': {FLATTENED_HINT}"))),
        }
        if len == 0 {
            return Err(DumpError(format!("memory file '{name}' is empty")));
        }
        if base.checked_add(len - 1).is_none() {
            return Err(DumpError(format!(
                "memory file '{name}' ({len} bytes) at {base:#x} runs past the 64-bit address space"
            )));
        }
        self.files.push((path.to_path_buf(), file));
        self.segments.push(Segment {
            base,
            len,
            file: self.files.len() - 1,
            offset: 0,
            file_len: len,
        });
        Ok(())
    }

    /// The `PT_LOAD` segments of an ELF core at their physical addresses (`p_paddr`).
    pub(crate) fn add_vmcore(&mut self, path: &Path) -> Result<(), DumpError> {
        let (file, len, kind) = open(path)?;
        let name = path.display();
        match kind {
            FileKind::Elf => {}
            FileKind::KdumpCompressed => {
                return Err(DumpError(format!("'{name}': {COMPRESSED_HINT}")))
            }
            FileKind::Flattened => return Err(DumpError(format!("'{name}': {FLATTENED_HINT}"))),
            FileKind::Raw => {
                return Err(DumpError(format!(
                    "'{name}' is not an ELF core; raw memory goes with --mem BASE:FILE"
                )))
            }
        }
        let loads = {
            let cache = ReadCache::new(&file);
            elf_loads(&cache, len)
                .map_err(|e| DumpError(format!("'{name}': not a readable ELF core: {e}")))?
        };
        if loads.is_empty() {
            return Err(DumpError(format!(
                "'{name}' has no PT_LOAD segment: it holds no memory"
            )));
        }
        self.files.push((path.to_path_buf(), file));
        let index = self.files.len() - 1;
        for (paddr, offset, filesz, memsz) in loads {
            self.segments.push(Segment {
                base: paddr,
                len: memsz,
                file: index,
                offset,
                file_len: filesz,
            });
        }
        Ok(())
    }

    /// Sorts the regions and refuses overlapping ones; touching ones stay separate segments
    /// but read as one range.
    pub(crate) fn seal(&mut self) -> Result<(), DumpError> {
        self.segments.sort_by_key(|s| s.base);
        for pair in self.segments.windows(2) {
            let [a, b] = pair else { continue };
            // add_raw/elf_loads checked that base + len - 1 does not overflow.
            let a_last = a.base + (a.len - 1);
            if a_last >= b.base {
                return Err(DumpError(format!(
                    "the memory of '{}' at {:#x}..={a_last:#x} overlaps '{}' at {:#x}",
                    self.files[a.file].0.display(),
                    a.base,
                    self.files[b.file].0.display(),
                    b.base,
                )));
            }
        }
        Ok(())
    }

    /// The physical ranges the dump holds, touching segments merged: `(first, last)`.
    pub(crate) fn ranges(&self) -> Vec<(u64, u64)> {
        let mut out: Vec<(u64, u64)> = Vec::new();
        for s in &self.segments {
            let last = s.base + (s.len - 1);
            match out.last_mut() {
                Some((_, prev_last)) if prev_last.checked_add(1) == Some(s.base) => {
                    *prev_last = last;
                }
                _ => out.push((s.base, last)),
            }
        }
        out
    }

    /// Copies `out.len()` bytes from physical address `pa`, crossing touching segments.
    fn read_bytes(&self, pa: u64, out: &mut [u8]) -> Result<(), MemFault> {
        let mut pa = pa;
        let mut done = 0usize;
        while done < out.len() {
            let seg = self.segment_at(pa).ok_or(MemFault)?;
            let within = pa - seg.base;
            let take = (seg.len - within).min((out.len() - done) as u64) as usize;
            let dst = out.get_mut(done..done + take).ok_or(MemFault)?;
            self.read_segment(seg, within, dst)?;
            done += take;
            pa = match pa.checked_add(take as u64) {
                Some(next) => next,
                None if done == out.len() => break,
                None => return Err(MemFault),
            };
        }
        Ok(())
    }

    fn segment_at(&self, pa: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.base <= pa);
        let seg = self.segments.get(i.checked_sub(1)?)?;
        (pa - seg.base < seg.len).then_some(seg)
    }

    /// Bytes `[within, within + dst.len())` of one segment: from the file where present,
    /// zeros past its file size.
    fn read_segment(&self, seg: &Segment, within: u64, dst: &mut [u8]) -> Result<(), MemFault> {
        let mut pos = within;
        let mut done = 0usize;
        while done < dst.len() {
            let left = (dst.len() - done) as u64;
            let piece = dst.get_mut(done..).ok_or(MemFault)?;
            if pos >= seg.file_len {
                piece.fill(0);
                return Ok(());
            }
            let file_pos = seg.offset.checked_add(pos).ok_or(MemFault)?;
            let block = file_pos / BLOCK;
            let in_block = (file_pos % BLOCK) as usize;
            let take = left.min(BLOCK - in_block as u64).min(seg.file_len - pos) as usize;
            self.with_block(seg.file, block, |bytes| {
                let src = bytes.get(in_block..in_block + take).ok_or(MemFault)?;
                piece.get_mut(..take).ok_or(MemFault)?.copy_from_slice(src);
                Ok(())
            })?;
            done += take;
            pos += take as u64;
        }
        Ok(())
    }

    fn with_block(
        &self,
        file: usize,
        block: u64,
        f: impl FnOnce(&[u8]) -> Result<(), MemFault>,
    ) -> Result<(), MemFault> {
        let mut cache = self.cache.borrow_mut();
        let key = (file, block);
        if let Some(i) = cache.iter().position(|(k, _)| *k == key) {
            let entry = cache.remove(i);
            cache.insert(0, entry);
        } else {
            let (_, handle) = self.files.get(file).ok_or(MemFault)?;
            let mut bytes = vec![0u8; BLOCK as usize];
            let n = read_up_to(handle, block * BLOCK, &mut bytes).map_err(|_| MemFault)?;
            bytes.truncate(n);
            cache.insert(0, (key, bytes));
            cache.truncate(CACHED_BLOCKS);
        }
        let (_, bytes) = cache.first().ok_or(MemFault)?;
        f(bytes)
    }
}

impl OldMemory for Dump {
    fn read_words(&self, pa: u64, out: &mut [u64]) -> Result<(), MemFault> {
        // STEs and CDs (64 bytes) are read without a heap buffer; the validator's larger
        // chunks get one.
        let mut small = [0u8; 64];
        let mut large = Vec::new();
        let len = out.len().checked_mul(8).ok_or(MemFault)?;
        let bytes = if len <= small.len() {
            small.get_mut(..len).ok_or(MemFault)?
        } else {
            large.resize(len, 0);
            &mut large[..]
        };
        self.read_bytes(pa, bytes)?;
        for (w, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            *w = u64::from_le_bytes(b);
        }
        Ok(())
    }
}

/// `(p_paddr, p_offset, p_filesz, p_memsz)` of every non-empty `PT_LOAD` segment of a 64-bit
/// ELF core, each checked to lie inside the file and the address space.
fn elf_loads(data: &ReadCache<&File>, file_len: u64) -> Result<Vec<(u64, u64, u64, u64)>, String> {
    let header = elf::FileHeader64::<object::Endianness>::parse(data).map_err(|e| {
        if matches!(data.read_bytes_at(4, 1), Ok([1])) {
            "a 32-bit ELF file; crash dumps of 64-bit kernels are ELF64".to_string()
        } else {
            e.to_string()
        }
    })?;
    let endian = header.endian().map_err(|e| e.to_string())?;
    if header.e_type(endian) != elf::ET_CORE {
        return Err("an ELF file, but not a core dump (e_type is not ET_CORE)".into());
    }
    let phdrs = header
        .program_headers(endian, data)
        .map_err(|e| e.to_string())?;
    let mut loads = Vec::new();
    for ph in phdrs {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let (paddr, offset, filesz, memsz) = (
            ph.p_paddr(endian),
            ph.p_offset(endian),
            ph.p_filesz(endian),
            ph.p_memsz(endian),
        );
        if memsz == 0 {
            continue;
        }
        if filesz > memsz {
            return Err(format!(
                "the segment at {paddr:#x} says it has more file bytes than memory bytes"
            ));
        }
        if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
            return Err(format!(
                "the segment at {paddr:#x} ends past the end of the file (truncated dump?)"
            ));
        }
        if paddr.checked_add(memsz - 1).is_none() {
            return Err(format!(
                "the segment at {paddr:#x} runs past the 64-bit address space"
            ));
        }
        loads.push((paddr, offset, filesz, memsz));
    }
    Ok(loads)
}
