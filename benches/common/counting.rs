//! A global allocator that counts live heap bytes, for the memory benches
//! (`#[path]`-included by each: the benches timing CPU keep the plain one).

/// The system allocator, counting live bytes.
pub struct Counting;

static LIVE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counter is only arithmetic on the sizes it was asked for.
unsafe impl std::alloc::GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        LIVE.fetch_add(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { std::alloc::System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        LIVE.fetch_sub(l.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(
            new.wrapping_sub(l.size()),
            std::sync::atomic::Ordering::Relaxed,
        );
        // SAFETY: `p` came from `alloc` with layout `l`.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

pub fn live() -> usize {
    LIVE.load(std::sync::atomic::Ordering::Relaxed)
}
