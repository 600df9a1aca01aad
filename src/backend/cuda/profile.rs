//! Per-kernel GPU time from CUDA events (`bench --profile`, `Backend::profile_kernels`): each
//! launch is bracketed by two events while recording is on, and the report sums the elapsed
//! times by kernel name. Event pairs serialise nothing but add a few microseconds of host work
//! per launch, so profiled runs are not timed runs: the wall-clock numbers come from runs with
//! recording off.

use crate::backend::profile::{by_name, OpStat};
use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct KernelProfiler {
    on: AtomicBool,
    /// The kernel the next launch runs (set when its function is looked up).
    next: Mutex<&'static str>,
    launches: Mutex<Vec<(&'static str, CudaEvent, CudaEvent)>>,
}

impl KernelProfiler {
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Start (clearing earlier records) or stop recording.
    pub fn set(&self, on: bool) {
        if on {
            self.launches
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        self.on.store(on, Ordering::Relaxed);
    }

    pub fn name_next(&self, name: &'static str) {
        if self.is_on() {
            *self.next.lock().unwrap_or_else(|e| e.into_inner()) = name;
        }
    }

    /// Runs `launch` between two recorded events when recording is on.
    pub fn around<T>(
        &self,
        stream: &CudaStream,
        launch: impl FnOnce() -> crate::error::Result<T>,
    ) -> crate::error::Result<T> {
        if !self.is_on() {
            return launch();
        }
        let event = || {
            stream
                .record_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(super::cuda_err)
        };
        let start = event()?;
        let out = launch()?;
        let end = event()?;
        let name = *self.next.lock().unwrap_or_else(|e| e.into_inner());
        self.launches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((name, start, end));
        Ok(out)
    }

    /// The recorded launches summed by kernel, largest total first (waits for the GPU).
    pub fn report(&self) -> crate::error::Result<Vec<OpStat>> {
        let launches =
            std::mem::take(&mut *self.launches.lock().unwrap_or_else(|e| e.into_inner()));
        let mut records = Vec::with_capacity(launches.len());
        for (name, start, end) in &launches {
            records.push((
                *name,
                start.elapsed_ms(end).map_err(super::cuda_err)? as f64,
            ));
        }
        Ok(by_name(records))
    }
}

/// The per-kernel table, with the caveat of event brackets.
pub fn table(stats: &[OpStat]) -> String {
    crate::backend::profile::table(
        "kernel",
        "Each launch is bracketed by two CUDA events; where the GPU runs dry between launches \
         the bracket also holds launch latency, so short kernels read a few µs high.",
        stats,
    )
}
