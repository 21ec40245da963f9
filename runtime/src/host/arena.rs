//! The plan's device arena, on the host: one lazily zeroed anonymous mapping,
//! page-aligned (so at least as aligned as the device's 256-byte arena, and
//! every region and buffer offset of the plan is as aligned on the CPU as on
//! the GPU). Untouched pages cost nothing, so an arena sized for a big GPU
//! budget costs only what is used. Ranges that are streamed through at memory
//! speed (block images) can be put on transparent huge pages
//! ([`HostArena::advise_huge`]) before they are written.

use memmap2::{Advice, MmapMut, MmapOptions};

/// Alignment of the arena's first byte (the plan's `arena.alignment` divides it).
pub const ARENA_ALIGN: usize = djinn_core::units::ALIGN as usize;

/// A transparent huge page (x86-64, and the usual arm64 configuration).
pub const HUGE_PAGE: u64 = 2 << 20;

pub struct HostArena {
    map: MmapMut,
    len: usize,
}

impl HostArena {
    /// `None` when the mapping fails or `bytes` does not fit the address space.
    pub fn zeroed(bytes: u64) -> Option<HostArena> {
        let len = usize::try_from(bytes).ok()?;
        // At least one page: a zero-length mapping is an error.
        let map = MmapOptions::new().len(len.max(1)).map_anon().ok()?;
        debug_assert!((map.as_ptr() as usize).is_multiple_of(ARENA_ALIGN));
        Some(HostArena { map, len })
    }

    /// Asks the OS to back `start..start + len` (clamped to the arena) with
    /// transparent huge pages when it is first touched. Advisory: where the OS
    /// declines (THP `never`, other platforms), the range keeps small pages.
    pub fn advise_huge(&self, start: u64, len: u64) {
        #[cfg(target_os = "linux")]
        {
            // Only whole huge pages can be huge: advise those inside the range.
            let end = start.saturating_add(len).min(self.len as u64);
            let s = start.div_ceil(HUGE_PAGE) * HUGE_PAGE;
            let e = end / HUGE_PAGE * HUGE_PAGE;
            if e > s {
                let _ = self.map.advise_range(Advice::HugePage, s as usize, (e - s) as usize);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (start, len, Advice::Normal);
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
        &self.map[..self.len]
    }
}

impl std::ops::DerefMut for HostArena {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.map[..self.len]
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
        assert_eq!(a.len(), 1000);
        assert!(HostArena::zeroed(0).unwrap().is_empty());
        assert!(HostArena::zeroed(u64::MAX).is_none());
    }

    #[test]
    fn huge_page_advice_keeps_contents_and_tolerates_any_range() {
        let mut a = HostArena::zeroed(3 * HUGE_PAGE + 123).unwrap();
        a.advise_huge(HUGE_PAGE - 7, HUGE_PAGE + 9);
        a.advise_huge(0, u64::MAX / 2);
        a[HUGE_PAGE as usize] = 3;
        assert_eq!(a[HUGE_PAGE as usize], 3);
        assert!(a[..HUGE_PAGE as usize].iter().all(|&b| b == 0));
    }
}
