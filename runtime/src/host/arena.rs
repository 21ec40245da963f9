//! The plan's device arena, on the host: one zeroed allocation aligned like
//! the device's (256 bytes), so every region and buffer offset of the plan is
//! as aligned on the CPU as on the GPU. Zeroed pages are allocated lazily by
//! the OS, so an arena sized for a big GPU budget costs only what is touched.

use std::alloc::Layout;
use std::ptr::NonNull;

/// Alignment of the arena's first byte (the plan's `arena.alignment` is a divisor of this or checked against it).
pub const ARENA_ALIGN: usize = 256;

pub struct HostArena {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: the arena owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for HostArena {}
unsafe impl Sync for HostArena {}

impl HostArena {
    /// `None` when the allocation fails or `bytes` does not fit the address space.
    pub fn zeroed(bytes: u64) -> Option<HostArena> {
        let len = usize::try_from(bytes).ok()?;
        let layout = Layout::from_size_align(len.max(1), ARENA_ALIGN).ok()?;
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(HostArena { ptr, len, layout })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl std::ops::Deref for HostArena {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr` points to `len` initialised (zeroed) bytes we own.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for HostArena {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostArena {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_aligned_and_writable() {
        let mut a = HostArena::zeroed(1000).unwrap();
        assert_eq!(a.as_ptr() as usize % ARENA_ALIGN, 0);
        assert!(a.iter().all(|&b| b == 0));
        a[999] = 7;
        assert_eq!(a[999], 7);
        assert!(HostArena::zeroed(0).unwrap().is_empty());
        assert!(HostArena::zeroed(u64::MAX).is_none());
    }
}
