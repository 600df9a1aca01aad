//! Per-op wall time of the CPU backend (`bench --profile`, `Backend::profile_kernels`): while
//! recording is on, every op is timed and its time added under a name that holds its shape
//! (a convolution's kernel, stride and channels; the first operand's shape for the rest), so the
//! table shows which layers the time goes to. Recording is one switch for the process, as the
//! backend itself holds no state; an op checks one atomic when it is off.

use crate::backend::profile::{by_name, table, OpStat};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static RECORDS: Mutex<Vec<(String, f64)>> = Mutex::new(Vec::new());

fn records() -> std::sync::MutexGuard<'static, Vec<(String, f64)>> {
    RECORDS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start (clearing earlier records) or stop recording.
pub fn set(on: bool) {
    if on {
        records().clear();
    }
    ON.store(on, Ordering::Relaxed);
}

/// An op's record name while recording is on (built only then), for [`timed`].
pub fn name(name: impl FnOnce() -> String) -> Option<String> {
    ON.load(Ordering::Relaxed).then(name)
}

/// Runs `op`, adding its time under `name` when there is one.
pub fn timed<T>(name: Option<String>, op: impl FnOnce() -> T) -> T {
    let Some(name) = name else {
        return op();
    };
    let start = Instant::now();
    let out = op();
    records().push((name, start.elapsed().as_secs_f64() * 1e3));
    out
}

/// The recorded ops summed by name, largest total first; the records are taken.
pub fn report() -> Vec<OpStat> {
    let taken = std::mem::take(&mut *records());
    by_name(taken.iter().map(|(n, ms)| (n.as_str(), *ms)))
}

/// The per-op table, with what its times hold.
pub fn report_table() -> String {
    table(
        "op",
        "Wall time of each CPU op (all threads of the op, its output allocation included).",
        &report(),
    )
}
