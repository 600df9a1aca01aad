//! CUDA graphs behind `Backend::replay`. The first call with a given key and input shapes runs
//! eagerly; the second runs the work once more eagerly with the graph pool active (so every
//! buffer it needs sits there), captures a third run as a graph and launches it; later calls
//! copy the new inputs into the graph's own input buffers, launch the graph and copy its outputs
//! out. One launch replaces the UNet forward's ~150, and no per-kernel host work remains. A key
//! met once only (a sampler's per-timestep work in a single run) never pays for a capture.
//!
//! Why a graph pool: a graph bakes in every buffer address it touched, so its buffers come from
//! a pool that eager work never draws from (the main pool would hand a buffer freed during
//! capture to the next caller, and the next replay would overwrite it), and which never frees
//! its free buffers while graphs live (they are the graphs' scratch). All graphs of a backend
//! share it: one graph's scratch may be another's input or output buffer, which is safe
//! because every replay copies its inputs in, runs, and copies its output out under the cache's
//! lock, on the one stream, so no buffer carries data from one replay to another.
//!
//! At most MAX_GRAPHS graphs are captured; keys met after that run eagerly. A capture that
//! fails (a driver that refuses it, work that is not capturable, memory) is reported once on
//! stderr and that key runs eagerly from then on. DIFFRECON_GRAPHS=0 turns graphs off.
//!
//! Single-threaded by design: while a capture runs, the backend's outputs come from the graph
//! pool and its launches are recorded, so no other thread may use the backend meanwhile (the
//! engine drives one backend from one thread).

use super::pool::DevicePool;
use super::{cuda_err, CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A captured graph with the buffers it reads its inputs from and writes its outputs to.
struct Captured {
    graph: SendGraph,
    inputs: Vec<CudaTensor>,
    outputs: Vec<CudaTensor>,
}

/// SAFETY: cudarc leaves CudaGraph !Send because a graph must not be used from two threads at
/// once; every use here happens under the cache's mutex.
struct SendGraph(CudaGraph);
unsafe impl Send for SendGraph {}

enum Slot {
    /// Met once (or met after the cap): the next call tries to capture.
    Seen,
    Captured(Captured),
    /// Capture failed for this key: run eagerly.
    Eager,
}

type Key = (usize, Vec<Vec<usize>>);

/// Captured graphs kept at most (each holds its input and output buffers and its executable
/// graph); keys met past it run eagerly, so a sweep over many DPS settings in one process
/// neither grows memory without bound nor thrashes captures.
const MAX_GRAPHS: usize = 512;

/// The graphs of one backend, by (caller's key, input shapes), and their buffer pool.
#[derive(Default)]
pub struct GraphCache {
    slots: Mutex<HashMap<Key, Slot>>,
    pool: Mutex<Option<Arc<DevicePool>>>,
    captures: AtomicU64,
    replays: AtomicU64,
}

/// How often work was captured and replayed (for tests and benchmarks).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphStats {
    pub captures: u64,
    pub replays: u64,
}

impl GraphCache {
    pub fn stats(&self) -> GraphStats {
        GraphStats {
            captures: self.captures.load(Ordering::Relaxed),
            replays: self.replays.load(Ordering::Relaxed),
        }
    }
}

/// DIFFRECON_GRAPHS=0|off turns graph capture off (every replay runs eagerly).
pub fn graphs_from_env() -> bool {
    !matches!(
        std::env::var("DIFFRECON_GRAPHS").as_deref(),
        Ok("0") | Ok("off") | Ok("false")
    )
}

type Work<'a> = crate::backend::DeviceWorkMany<'a, CudaTensor>;

/// Ends a capture and restores the backend's own pool however the capture is left (an error
/// or a panic in the captured work), so the stream and the backend stay usable.
struct CaptureScope<'a> {
    be: &'a CudaBackend,
    capturing: bool,
}

impl CaptureScope<'_> {
    fn end(&mut self) -> Result<Option<CudaGraph>> {
        self.capturing = false;
        self.be
            .stream
            .end_capture(CUgraphInstantiate_flags(0))
            .map_err(cuda_err)
    }
}

impl Drop for CaptureScope<'_> {
    fn drop(&mut self) {
        if self.capturing {
            let _ = self.end();
        }
        *self
            .be
            .capture_pool
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl CudaBackend {
    pub(super) fn replay_graph(
        &self,
        key: usize,
        inputs: &[&CudaTensor],
        f: Work<'_>,
    ) -> Result<Vec<CudaTensor>> {
        let id: Key = (key, inputs.iter().map(|t| t.shape.clone()).collect());
        let mut slots = self.graphs.slots.lock().unwrap_or_else(|e| e.into_inner());
        let captured = slots
            .values()
            .filter(|s| matches!(s, Slot::Captured(_)))
            .count();
        match slots.get_mut(&id) {
            Some(Slot::Captured(c)) => {
                for (own, new) in c.inputs.iter_mut().zip(inputs) {
                    self.stream
                        .memcpy_dtod(new.dev()?, own.dev_mut()?)
                        .map_err(cuda_err)?;
                }
                c.graph.0.launch().map_err(cuda_err)?;
                self.graphs.replays.fetch_add(1, Ordering::Relaxed);
                return self.copies_of(&c.outputs);
            }
            Some(Slot::Seen) if captured < MAX_GRAPHS => {}
            // First sight, past the cap, or a failed capture: eager, without the lock.
            slot => {
                if slot.is_none() {
                    slots.insert(id, Slot::Seen);
                }
                drop(slots);
                return f(inputs);
            }
        }
        match self.capture(inputs, f) {
            Ok(c) => {
                self.graphs.captures.fetch_add(1, Ordering::Relaxed);
                c.graph.0.launch().map_err(cuda_err)?;
                let out = self.copies_of(&c.outputs);
                slots.insert(id, Slot::Captured(c));
                out
            }
            Err(e) => {
                eprintln!("note: CUDA graph capture failed ({e}); running without a graph");
                slots.insert(id, Slot::Eager);
                drop(slots);
                f(inputs)
            }
        }
    }

    fn copies_of(&self, ts: &[CudaTensor]) -> Result<Vec<CudaTensor>> {
        ts.iter().map(|t| self.copy_of(t)).collect()
    }

    /// A fresh tensor from the active pool (the main one outside a capture) holding `t`'s values.
    fn copy_of(&self, t: &CudaTensor) -> Result<CudaTensor> {
        let mut out = self.output(&t.shape)?;
        self.stream
            .memcpy_dtod(t.dev()?, out.dev_mut()?)
            .map_err(cuda_err)?;
        Ok(out)
    }

    /// Runs `f` once eagerly on graph-owned copies of the inputs (filling the graph pool),
    /// then captures a second run. The captured work has not run yet when this returns.
    fn capture(&self, inputs: &[&CudaTensor], f: Work<'_>) -> Result<Captured> {
        let pool = self
            .graphs
            .pool
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| Arc::new(DevicePool::pinned(self.stream.clone())))
            .clone();
        *self.capture_pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(pool);
        let mut scope = CaptureScope {
            be: self,
            capturing: false,
        };
        let own = inputs
            .iter()
            .map(|t| self.copy_of(t))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&CudaTensor> = own.iter().collect();
        drop(f(&refs)?);
        self.stream.synchronize().map_err(cuda_err)?;
        self.stream
            .begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)
            .map_err(cuda_err)?;
        scope.capturing = true;
        let outputs = f(&refs);
        // End the capture whatever f did, so the stream is usable again.
        let graph = scope.end();
        let (outputs, graph) = (outputs?, graph?);
        let graph = graph.ok_or_else(|| Error::internal("the capture recorded no work"))?;
        Ok(Captured {
            graph: SendGraph(graph),
            inputs: own,
            outputs,
        })
    }
}
