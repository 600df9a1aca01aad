//! Per-kernel GPU time from CUDA events (`bench --profile`, `Backend::profile_kernels`): each
//! launch is bracketed by two events while recording is on, and the report sums the elapsed
//! times by kernel name. Event pairs serialise nothing but add a few microseconds of host work
//! per launch, so profiled runs are not timed runs: the wall-clock numbers come from runs with
//! recording off.

use cudarc::driver::sys::CUevent_flags;
use cudarc::driver::{CudaEvent, CudaStream};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub struct KernelProfiler {
    on: AtomicBool,
    /// The kernel the next launch runs (set when its function is looked up).
    next: Mutex<&'static str>,
    launches: Mutex<Vec<(&'static str, CudaEvent, CudaEvent)>>,
}

/// One kernel's share of the recorded GPU time.
pub struct KernelStat {
    pub name: &'static str,
    pub launches: usize,
    pub total_ms: f64,
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
    pub fn report(&self) -> crate::error::Result<Vec<KernelStat>> {
        let launches =
            std::mem::take(&mut *self.launches.lock().unwrap_or_else(|e| e.into_inner()));
        let mut by_name: HashMap<&'static str, (usize, f64)> = HashMap::new();
        for (name, start, end) in &launches {
            let ms = start.elapsed_ms(end).map_err(super::cuda_err)? as f64;
            let e = by_name.entry(name).or_default();
            e.0 += 1;
            e.1 += ms;
        }
        let mut stats: Vec<KernelStat> = by_name
            .into_iter()
            .map(|(name, (launches, total_ms))| KernelStat {
                name,
                launches,
                total_ms,
            })
            .collect();
        stats.sort_by(|a, b| b.total_ms.total_cmp(&a.total_ms).then(a.name.cmp(b.name)));
        Ok(stats)
    }
}

/// A markdown table of a profile: kernel, launches, total and mean time, share; with the
/// caveat of event brackets.
pub fn table(stats: &[KernelStat]) -> String {
    let total: f64 = stats.iter().map(|s| s.total_ms).sum();
    let launches: usize = stats.iter().map(|s| s.launches).sum();
    let mut s = String::from(
        "Each launch is bracketed by two CUDA events; where the GPU runs dry between launches \
         the bracket also holds launch latency, so short kernels read a few µs high.\n\n\
         | kernel | launches | total ms | mean us | share |\n|---|---|---|---|---|\n",
    );
    for k in stats {
        s += &format!(
            "| {} | {} | {:.3} | {:.1} | {:.1}% |\n",
            k.name,
            k.launches,
            k.total_ms,
            1e3 * k.total_ms / k.launches.max(1) as f64,
            100.0 * k.total_ms / total.max(1e-12)
        );
    }
    s += &format!("| all | {launches} | {total:.3} | | 100% |\n");
    s
}
