// Snapshots of a host's physical pages, for the false-positive profiler: which PFNs are
// allocated, in folios of which order, with how many references, and of what kind. The
// profiler turns one into a PageArray (one makeFolio per folio, refs as its refcount).
//
// ---- Reading the host: /proc/kpagecount and /proc/kpageflags ----
//
// Both files hold one native-endian u64 per PFN (file offset = pfn * 8): kpagecount the
// page's map count ("number of times mapped", not its refcount), kpageflags KPF_* bits as
// documented in the kernel's Documentation/admin-guide/mm/pagemap.rst (uapi
// linux/kernel-page-flags.h; the bit numbers used here are listed in snapshot.cpp). Both are
// mode 0400 root: reading them needs root (CAP_SYS_ADMIN). They report size 0, so their
// length (max_pfn * 8) is found by probing: a read at or past the end returns nothing.
//
// How pages become folios, one pass in PFN order:
//   - free or absent, not recorded: NOPAGE (a hole: no struct page), OFFLINE (ballooned or
//     hot-unplugged) and BUDDY (free in the buddy allocator; since Linux 4.19 every page of
//     a free block reads BUDDY, not only the first: on a 6.18 host the BUDDY pages match
//     nr_free_pages of /proc/vmstat exactly).
//   - "blank" pages, no KPF bit at all and map count 0, are ambiguous: an allocated kernel
//     page that exports no flag (vmalloc, kernel stacks, driver pages), a free page on a
//     per-CPU list (not BUDDY), memory the kernel has not handed to the allocator yet
//     (deferred struct page init: a 6.18 guest booted with deferred_init=lazy reads 18 of
//     its 24 GiB blank), or a hole that has a memmap (that guest's 3-4 GiB MMIO gap). A run of blank
//     pages is split: the whole naturally aligned blocks of 2^max_order pages in it (the
//     largest buddy block: MAX_PAGE_ORDER from the number of columns of /proc/buddyinfo
//     when reading /proc, else kSnapMaxBuddyOrder) are taken as free and counted in
//     blank_free; the other blank pages are allocated order-0 kernel pages (kSnapOther).
//     A flagless allocation of a whole aligned max-order block is the error this makes; free
//     per-CPU pages counted as allocated is the other.
//   - COMPOUND_HEAD followed by COMPOUND_TAIL pages is one folio of order log2(run length),
//     with the head's flags and map count. A run whose length is not a power of two, whose
//     head is not aligned to its length, that has no head (tails first: the folio was split
//     or freed while we read, or its head lies before the span read), or that the end of the
//     span cuts (the PFN after it is a tail), is recorded page by page as order-0 folios,
//     and counted in odd_runs.
//   - any other page is an order-0 folio.
// The files are read while the kernel changes them, 64 Ki PFNs at a time: a snapshot is
// not atomic, and folios that change shape during the read show up as odd runs.
//
// Flags (SnapshotFlag), from the head page's KPF bits:
//   kSnapZero   ZERO_PAGE (the shared zero page; the huge zero folio also gets kSnapThp)
//   kSnapHuge   HUGE (hugetlb, free pool pages included), plus kSnapAnon or kSnapFile
//   kSnapThp    THP (a transparent huge folio), plus kSnapAnon or kSnapFile
//   kSnapSlab   SLAB
//   kSnapAnon   ANON, or SWAPCACHE (an anon page in the swap cache, not mapped)
//   kSnapFile   not anon, and on an LRU list or mapped: page cache (shmem included)
//   kSnapOther  none of the above: kernel allocations, page tables, reserved pages, ...
//
// ---- The .pksnap file format, version 1 ----
//
// All integers little-endian. Offsets in bytes.
//
//   0   magic       8 bytes "PKSNAP1\0"
//   8   version     u32 = 1
//   12  reserved    u32 = 0
//   16  pages       u64: the PFN span, PFNs 0..pages-1
//   24  folios      u64: the number of folios (after expanding runs)
//   32  odd_runs    u64: HostSnapshot::odd_runs
//   40  blank_free  u64: HostSnapshot::blank_free, at most pages
//   48  body_bytes  u64: length of the record body
//   56  source_len  u32: length of the source string, at most 65536
//   60  source      source_len bytes (UTF-8, no terminator)
//   ..  body        body_bytes bytes: run records, below
//   ..  checksum    u64: FNV-1a 64 (offset basis 0xcbf29ce484222325, prime 0x100000001b3)
//                   over every byte before it, header included
//
// The body is a sequence of run records. A run is `count` folios of the same order, flags
// and refs, each starting where the previous one ends. Every field is an unsigned LEB128
// varint (7 bits a byte, low group first, high bit = more follows, at most 10 bytes, no bits
// beyond 64):
//   gap     pages between the end of the previous run (0 at the start) and this run's
//           first folio: the free or absent PFNs in between
//   order   0..30
//   flags   SnapshotFlag bits (below 128)
//   refs    1..2^31-1
//   count   folios in the run, at least 1
// So folio pfns are increasing and never overlap by construction. A host's order-0 kernel
// and page-cache pages come in long runs of refs 1, so a file is a few bytes per run.
//
// read_snapshot refuses, with EINVAL and a message naming the path and the problem: a bad
// magic, another version, a file shorter than its header says (truncated at byte N),
// trailing bytes, a checksum mismatch, a bad header field (reserved not 0, source too long,
// folios or blank_free > pages, pages > 2^40), a bad record (varint overflow, record past the body, count 0, folio
// count not matching the header), a folio beyond `pages`, a bad order, a folio not aligned
// to its order, refs 0 or past 2^31-1, unknown flag bits. write_snapshot refuses a snapshot
// that read_snapshot would refuse (folios out of order or overlapping included), so every
// file it writes reads back equal. Both answer ENOENT / EACCES when the file cannot be
// opened, and no core code here throws: allocation failure is ENOMEM.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/status.h"
#include "base/threads.h"

namespace pinlab {

enum SnapshotFlag : uint16_t {
  kSnapAnon = 1,
  kSnapFile = 2,
  kSnapThp = 4,
  kSnapHuge = 8,  // hugetlb
  kSnapZero = 16,
  kSnapSlab = 32,
  kSnapOther = 64,
};
inline constexpr uint16_t kSnapAllFlags = 127;

// Largest order of a buddy block (MAX_PAGE_ORDER) when /proc/buddyinfo does not say, or
// the files are not /proc's (x86-64's default): the block size of the blank-page rule.
inline constexpr unsigned kSnapMaxBuddyOrder = 10;

struct SnapshotFolio {
  uint64_t pfn = 0;  // head
  uint8_t order = 0;
  // The head's map count from kpagecount, clamped to 2^31-1, and at least 1. kpagecount is
  // the number of page-table mappings, not the refcount: an allocated folio that no process
  // maps (page cache not mmapped, slab, kernel pages, the zero page, free hugetlb pool pages)
  // reads 0 there, yet holds at least the reference of whoever allocated it. In a PageArray
  // refcount 0 means free, so an allocated, non-free folio gets at least 1.
  uint32_t refs = 1;
  uint16_t flags = 0;  // SnapshotFlag bits

  bool operator==(const SnapshotFolio&) const = default;
};

struct HostSnapshot {
  uint64_t pages = 0;                 // PFN span covered: PFNs 0..pages-1
  std::vector<SnapshotFolio> folios;  // allocated folios in PFN order; PFNs not covered are
                                      // free or absent (buddy, nopage, offline, holes)
  std::string source;                 // e.g. "/proc (host kernel 6.18.44, 2026-11-23T12:00:00Z)"
  // Compound runs that could not be one folio (length not a power of two, misaligned,
  // headless, or cut by the end of the span) and were recorded as order-0 folios.
  uint64_t odd_runs = 0;
  // Blank pages (no flags, map count 0) taken as free: whole aligned max-order blocks of
  // them, mostly memory not yet handed to the allocator. Not in `folios`.
  uint64_t blank_free = 0;

  bool operator==(const HostSnapshot&) const = default;
};

// Called after each block read, and once at the end with done == total (PFNs).
using SnapshotProgress = std::function<void(uint64_t done, uint64_t total)>;

// Reads kpagecount and kpageflags (paths given, so tests can use fixture files), PFNs
// 0..min(max_pages, entries)-1 (max_pages 0: all of the files), 64 Ki entries per read,
// into `out` (replaced). Errors: ENOENT for a missing file; EACCES naming the file and what
// is needed ("needs root (CAP_SYS_ADMIN) to read /proc/kpagecount"); EINVAL for files of
// different lengths, a length not a multiple of 8, or a file that ends early while read.
// `control` may stop the read between blocks (kCancelled).
Status read_host_snapshot(const std::string& kpagecount, const std::string& kpageflags,
                          uint64_t max_pages, const SnapshotProgress& progress, HostSnapshot* out,
                          const RunControl* control = nullptr);

// Writes `snap` as a .pksnap file (through a temporary file in the same directory, renamed
// over `path`, so a failed write never leaves a partial file under that name).
Status write_snapshot(const std::string& path, const HostSnapshot& snap);
// Whether write_snapshot could write `path`: EINVAL if it exists as anything but a regular file
// (a symbolic link, a FIFO, a directory: never written through) or its folder is not a writable
// directory. Called before a long read, so a bad --out fails at once.
Status check_snapshot_output(const std::string& path);

// The most pages a .pksnap file may span (the format's limit).
inline constexpr uint64_t kSnapMaxPages = uint64_t{1} << 40;

// Reads a .pksnap file into `out` (replaced; left empty on error). A snapshot spanning more
// than `max_pages` pages is refused (EINVAL) before its folios are decoded, so a reader that
// can only use so many (the profiler: a PageArray's 2^31) never expands a bigger one. Sizes
// are checked before anything is allocated: a file that is not a regular file is refused
// (a FIFO is never waited on), and a file or folio list that physical memory cannot hold is
// ENOMEM.
Status read_snapshot(const std::string& path, HostSnapshot* out,
                     uint64_t max_pages = kSnapMaxPages);

}  // namespace pinlab
