//! The global allocator: mimalloc, called so that ordinary allocations take its fast path.
//!
//! mimalloc instead of glibc's malloc: a proxy allocates and frees many small buffers per
//! request, and glibc spent ~12% of the proxy's CPU there (arena locking, consolidation, and
//! heap trimming with `brk` under steady load). Built without transparent huge pages: with
//! them, 2,000 idle keep-alive connections held 104 MiB instead of 63 MiB (same throughput).
//!
//! Why not the `mimalloc` crate's `MiMalloc`: it passes every request to `mi_malloc_aligned`,
//! whose fast path only serves sizes up to 1 KiB; anything larger whose rounded size is not a
//! power of two (a boxed request future, a header table) went through mimalloc's
//! over-allocating aligned path: ~87 instructions per allocation instead of ~20, 7.8% of a
//! static-file request's instructions. Like std's `System` allocator, we call the plain
//! functions when their guaranteed alignment suffices and the aligned ones only otherwise.

// An allocator is FFI and raw pointers by nature; this module is the only place they meet.
#![allow(unsafe_code)]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as mi;

/// The alignment every `mi_malloc` block of at least this size has (`MI_MAX_ALIGN_SIZE`).
const MIN_ALIGN: usize = 16;

/// The process allocator (see the module docs).
pub struct Mimalloc;

/// Whether a plain `mi_malloc` block of `size` bytes is aligned enough for `align`: blocks are
/// aligned to 16 bytes, or to their size when smaller (as for glibc's `malloc`).
#[inline]
fn plain_fits(align: usize, size: usize) -> bool {
    align <= MIN_ALIGN && align <= size
}

// SAFETY: every pointer returned comes from mimalloc with at least the layout's size and
// alignment (checked by `plain_fits` or requested from the aligned functions); `mi_free` and
// `mi_realloc*` accept any pointer mimalloc returned, whichever function returned it.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain FFI calls; mimalloc returns null on failure, as `alloc` must.
        unsafe {
            if plain_fits(layout.align(), layout.size()) {
                mi::mi_malloc(layout.size()).cast()
            } else {
                mi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if plain_fits(layout.align(), layout.size()) {
                mi::mi_zalloc(layout.size()).cast()
            } else {
                mi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's contract).
        unsafe {
            if plain_fits(layout.align(), new_size) {
                mi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size and alignment mixture gets a block with that alignment, which survives a
    /// grow and a shrink with its contents.
    #[test]
    fn blocks_are_aligned_and_reallocate() {
        let a = Mimalloc;
        for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1, 3, 8, 15, 16, 24, 100, 1000, 1728, 2500, 5000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every pointer is freed with its layout.
                unsafe {
                    let p = a.alloc(layout);
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "size {size} align {align}");
                    p.write_bytes(0xA5, size);
                    let q = a.realloc(p, layout, size * 3);
                    assert_eq!(q as usize % align, 0, "grown: size {size} align {align}");
                    assert!(std::slice::from_raw_parts(q, size)
                        .iter()
                        .all(|&b| b == 0xA5));
                    let grown = Layout::from_size_align(size * 3, align).unwrap();
                    let r = a.realloc(q, grown, size.div_ceil(2));
                    assert_eq!(r as usize % align, 0, "shrunk: size {size} align {align}");
                    a.dealloc(r, Layout::from_size_align(size.div_ceil(2), align).unwrap());
                    let z = a.alloc_zeroed(layout);
                    assert_eq!(z as usize % align, 0);
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                }
            }
        }
    }
}
