//! Device buffers planned once per (batch, size): a dropped `CudaTensor` hands its buffer back
//! to a free list keyed by element count, and the next output of that length reuses it. A
//! sampler asks for the same lengths in the same order every step, so from the second step on
//! every request is served from the lists: no device allocation in the hot loop (and the
//! pointers a CUDA graph would capture stay put).
//!
//! All work runs on the backend's one stream, so handing a buffer to the next op while a kernel
//! queued earlier still reads it is safe: the next writer is queued after that kernel.
//!
//! `FreeLists` is the bookkeeping alone, generic over the buffer type, so it is unit-tested on
//! the CPU; `DevicePool` puts device slices in it.

use cudarc::driver::{CudaSlice, CudaStream, DeviceRepr, DriverError, ValidAsZeroBits};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// How the CUDA backend's buffer requests were served since it was created.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Requests served by a fresh device allocation.
    pub allocated: u64,
    /// Requests served by a buffer from the free lists.
    pub reused: u64,
}

/// Free buffers by element count, with counts of fresh and reused requests.
pub struct FreeLists<T> {
    free: Mutex<HashMap<usize, Vec<T>>>,
    allocated: AtomicU64,
    reused: AtomicU64,
}

impl<T> Default for FreeLists<T> {
    fn default() -> Self {
        FreeLists {
            free: Mutex::new(HashMap::new()),
            allocated: AtomicU64::new(0),
            reused: AtomicU64::new(0),
        }
    }
}

impl<T> FreeLists<T> {
    fn lock(&self) -> MutexGuard<'_, HashMap<usize, Vec<T>>> {
        // A panic elsewhere while the lock was held leaves the map consistent (every update
        // is a single push or pop), so a poisoned lock is still usable.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A free buffer of `len` elements, or a fresh one from `alloc` (called without the lock).
    pub fn take<E>(&self, len: usize, alloc: impl FnOnce(usize) -> Result<T, E>) -> Result<T, E> {
        let hit = self.lock().get_mut(&len).and_then(Vec::pop);
        match hit {
            Some(b) => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                Ok(b)
            }
            None => {
                let b = alloc(len)?;
                self.allocated.fetch_add(1, Ordering::Relaxed);
                Ok(b)
            }
        }
    }

    /// Return a buffer of `len` elements for reuse.
    pub fn give(&self, len: usize, b: T) {
        self.lock().entry(len).or_default().push(b);
    }

    /// Remove every free buffer (returned, so the caller drops them outside the lock).
    pub fn drain(&self) -> Vec<T> {
        self.lock().drain().flat_map(|(_, v)| v).collect()
    }

    /// Buffers waiting for reuse.
    pub fn free_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    pub fn stats(&self) -> AllocStats {
        AllocStats {
            allocated: self.allocated.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
        }
    }
}

/// The backend's device buffers: f32 tensors and the f64 scratch of the per-item reductions.
pub(super) struct DevicePool {
    pub(super) stream: Arc<CudaStream>,
    f32s: FreeLists<CudaSlice<f32>>,
    f64s: FreeLists<CudaSlice<f64>>,
    /// Whether running out of device memory may free the free lists. Not for the CUDA graphs'
    /// pool: its free buffers are the captured graphs' scratch, which their replays still write.
    release_on_oom: bool,
}

impl DevicePool {
    pub(super) fn new(stream: Arc<CudaStream>) -> Self {
        DevicePool {
            stream,
            f32s: FreeLists::default(),
            f64s: FreeLists::default(),
            release_on_oom: true,
        }
    }

    /// A pool whose free buffers are never released behind its owner's back (graph.rs).
    pub(super) fn pinned(stream: Arc<CudaStream>) -> Self {
        DevicePool {
            release_on_oom: false,
            ..DevicePool::new(stream)
        }
    }

    /// A fresh zeroed slice; when the device is out of memory, the free buffers are released
    /// (unless the pool is pinned) and the allocation tried once more.
    fn fresh<T: DeviceRepr + ValidAsZeroBits>(
        &self,
        len: usize,
    ) -> Result<CudaSlice<T>, DriverError> {
        self.stream.alloc_zeros::<T>(len).or_else(|e| {
            if !self.release_on_oom {
                return Err(e);
            }
            self.release_free();
            self.stream.alloc_zeros::<T>(len)
        })
    }

    /// A device slice of `len` f32 (contents unspecified: the caller overwrites it).
    pub(super) fn take_f32(&self, len: usize) -> Result<CudaSlice<f32>, DriverError> {
        self.f32s.take(len, |n| self.fresh(n))
    }

    pub(super) fn give_f32(&self, b: CudaSlice<f32>) {
        self.f32s.give(b.len(), b);
    }

    /// A device slice of `len` f64 (contents unspecified).
    pub(super) fn take_f64(&self, len: usize) -> Result<CudaSlice<f64>, DriverError> {
        self.f64s.take(len, |n| self.fresh(n))
    }

    pub(super) fn give_f64(&self, b: CudaSlice<f64>) {
        self.f64s.give(b.len(), b);
    }

    /// Free every buffer waiting for reuse (live tensors are untouched).
    pub(super) fn release_free(&self) {
        drop(self.f32s.drain());
        drop(self.f64s.drain());
    }

    pub(super) fn stats(&self) -> AllocStats {
        let (a, b) = (self.f32s.stats(), self.f64s.stats());
        AllocStats {
            allocated: a.allocated + b.allocated,
            reused: a.reused + b.reused,
        }
    }

    pub(super) fn free_count(&self) -> usize {
        self.f32s.free_count() + self.f64s.free_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A stand-in for a device buffer: its length and a serial number.
    #[derive(Debug, PartialEq)]
    struct Fake(usize, u32);

    struct Alloc {
        next: Cell<u32>,
    }

    impl Alloc {
        fn make(&self, len: usize) -> Result<Fake, ()> {
            self.next.set(self.next.get() + 1);
            Ok(Fake(len, self.next.get()))
        }
    }

    #[test]
    fn reuses_by_length_and_counts() {
        let lists = FreeLists::<Fake>::default();
        let al = Alloc { next: Cell::new(0) };
        let a = lists.take(10, |n| al.make(n)).unwrap();
        let b = lists.take(20, |n| al.make(n)).unwrap();
        assert_eq!(
            lists.stats(),
            AllocStats {
                allocated: 2,
                reused: 0
            }
        );
        lists.give(10, a);
        // Another length is not served by the free buffer of length 10.
        let c = lists.take(11, |n| al.make(n)).unwrap();
        assert_eq!(c, Fake(11, 3));
        // The same length is, without calling the allocator.
        let d = lists
            .take(10, |_| -> Result<Fake, ()> { panic!("must reuse") })
            .unwrap();
        assert_eq!(d, Fake(10, 1));
        assert_eq!(
            lists.stats(),
            AllocStats {
                allocated: 3,
                reused: 1
            }
        );
        lists.give(20, b);
        lists.give(11, c);
        lists.give(10, d);
        assert_eq!(lists.free_count(), 3);
        assert_eq!(lists.drain().len(), 3);
        assert_eq!(lists.free_count(), 0);
    }

    #[test]
    fn a_failed_allocation_counts_nothing() {
        let lists = FreeLists::<Fake>::default();
        assert!(lists.take(5, |_| Err("out of memory")).is_err());
        assert_eq!(lists.stats(), AllocStats::default());
    }

    /// A step-like workload (outputs kept, intermediates dropped, the state replaced at the
    /// end): the first step allocates, the second reuses every buffer.
    #[test]
    fn second_step_of_a_fixed_workload_allocates_nothing() {
        let lists = FreeLists::<Fake>::default();
        let al = Alloc { next: Cell::new(0) };
        let take = |n: usize| lists.take(n, |n| al.make(n)).unwrap();
        let step = |x: Fake| -> Fake {
            let h = take(64);
            let skip = take(64);
            let down = take(16);
            lists.give(64, h);
            let up = take(64);
            let mid = take(16);
            lists.give(16, down);
            lists.give(16, mid);
            let out = take(x.0);
            lists.give(64, skip);
            lists.give(64, up);
            lists.give(x.0, x);
            out
        };
        let x = take(32);
        let x = step(x);
        let after_first = lists.stats();
        assert!(after_first.allocated > 1);
        let _x = step(x);
        let after_second = lists.stats();
        assert_eq!(after_second.allocated, after_first.allocated);
        assert!(after_second.reused > after_first.reused);
    }
}
