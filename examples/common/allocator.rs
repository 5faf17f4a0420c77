//! The global allocator of the example gateway and of the bench's raw proxy: mimalloc,
//! called the way Rust's `System` allocator calls malloc.
//!
//! The `mimalloc` crate sends every allocation through `mi_malloc_aligned`. mimalloc 3's
//! aligned path, whenever the size class's current page runs out, over-allocates and
//! aligns by hand, even for the 8- and 16-byte alignments every block has anyway: about
//! 13 such allocations per gateway request, 3,000 instructions of its 107,000
//! (benches/README.md). Here alignments up to 16 go to plain `mi_malloc`, which
//! guarantees them, and only larger ones take the aligned path.

// A global allocator cannot be written without it; nothing else in the project uses it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::c_void;

/// The alignment mimalloc gives every block at least this large (its `MI_MAX_ALIGN_SIZE`,
/// like malloc's on x86-64 and AArch64); smaller blocks are 8-byte aligned, enough for
/// any layout whose alignment is not above its size.
const GUARANTEED_ALIGN: usize = 16;

/// mimalloc as the global allocator.
pub(crate) struct MiMalloc;

/// Whether plain `mi_malloc` of `size` bytes is aligned enough for `align`.
fn plain(size: usize, align: usize) -> bool {
    align <= GUARANTEED_ALIGN && align <= size
}

// SAFETY: every pointer handed out comes from mimalloc with at least the layout's size
// and alignment (`plain` holds only where mimalloc guarantees the alignment), and is
// given back to mimalloc's `mi_free`, which takes both aligned and plain blocks.
unsafe impl GlobalAlloc for MiMalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            unsafe { libmimalloc_sys::mi_malloc(layout.size()) as *mut u8 }
        } else {
            unsafe { libmimalloc_sys::mi_malloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if plain(layout.size(), layout.align()) {
            unsafe { libmimalloc_sys::mi_zalloc(layout.size()) as *mut u8 }
        } else {
            unsafe { libmimalloc_sys::mi_zalloc_aligned(layout.size(), layout.align()) as *mut u8 }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        unsafe { libmimalloc_sys::mi_free(ptr as *mut c_void) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if plain(new_size, layout.align()) {
            unsafe { libmimalloc_sys::mi_realloc(ptr as *mut c_void, new_size) as *mut u8 }
        } else {
            unsafe {
                libmimalloc_sys::mi_realloc_aligned(ptr as *mut c_void, new_size, layout.align())
                    as *mut u8
            }
        }
    }
}
