//! CUDA graphs behind `Backend::replay`: the first call with a given key and input shapes runs
//! the work once eagerly (every buffer it needs then sits in a private pool), captures a second
//! run as a graph and launches it; later calls copy the new inputs into the graph's own input
//! buffers, launch the graph and copy its output out. One launch replaces the UNet forward's
//! ~150, and no per-kernel host work remains.
//!
//! Why a private pool: the graph bakes in every buffer address it touched. Its buffers come
//! from a pool that only the graph's own tensors hold, so no other tensor can ever be handed
//! one of them (the main pool would give a buffer freed during capture to the next caller, and
//! the next replay would overwrite it).
//!
//! A capture that fails (a driver that refuses it, work that is not capturable) is reported
//! once on stderr and that key runs eagerly from then on. DIFFRECON_GRAPHS=0 turns graphs off.

use super::pool::DevicePool;
use super::{cuda_err, CudaBackend, CudaTensor};
use crate::error::{Error, Result};
use cudarc::driver::sys::{CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::CudaGraph;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A captured graph with the buffers it reads its inputs from and writes its output to.
struct Captured {
    graph: SendGraph,
    inputs: Vec<CudaTensor>,
    output: CudaTensor,
}

/// SAFETY: cudarc leaves CudaGraph !Send because a graph must not be used from two threads at
/// once; every use here happens under the cache's mutex.
struct SendGraph(CudaGraph);
unsafe impl Send for SendGraph {}

enum Slot {
    Captured(Captured),
    /// Capture failed for this key: run eagerly.
    Eager,
}

type Key = (usize, Vec<Vec<usize>>);

/// The graphs of one backend, by (caller's key, input shapes).
#[derive(Default)]
pub struct GraphCache {
    slots: Mutex<HashMap<Key, Slot>>,
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

type Work<'a> = crate::backend::DeviceWork<'a, CudaTensor>;

impl CudaBackend {
    pub(super) fn replay_graph(
        &self,
        key: usize,
        inputs: &[&CudaTensor],
        f: Work<'_>,
    ) -> Result<CudaTensor> {
        let id: Key = (key, inputs.iter().map(|t| t.shape.clone()).collect());
        let mut slots = self.graphs.slots.lock().unwrap_or_else(|e| e.into_inner());
        match slots.get_mut(&id) {
            Some(Slot::Eager) => return f(inputs),
            Some(Slot::Captured(c)) => {
                for (own, new) in c.inputs.iter_mut().zip(inputs) {
                    self.stream
                        .memcpy_dtod(new.dev(), own.dev_mut())
                        .map_err(cuda_err)?;
                }
                c.graph.0.launch().map_err(cuda_err)?;
                self.graphs.replays.fetch_add(1, Ordering::Relaxed);
                return self.copy_of(&c.output);
            }
            None => {}
        }
        match self.capture(inputs, f) {
            Ok(c) => {
                self.graphs.captures.fetch_add(1, Ordering::Relaxed);
                c.graph.0.launch().map_err(cuda_err)?;
                let out = self.copy_of(&c.output);
                slots.insert(id, Slot::Captured(c));
                out
            }
            Err(e) => {
                eprintln!("note: CUDA graph capture failed ({e}); running without a graph");
                slots.insert(id, Slot::Eager);
                f(inputs)
            }
        }
    }

    /// A fresh tensor from the active pool (the main one outside a capture) holding `t`'s values.
    fn copy_of(&self, t: &CudaTensor) -> Result<CudaTensor> {
        let mut out = self.output(&t.shape)?;
        self.stream
            .memcpy_dtod(t.dev(), out.dev_mut())
            .map_err(cuda_err)?;
        Ok(out)
    }

    /// Runs `f` once eagerly on private copies of the inputs (filling a private pool), then
    /// captures a second run. The captured work has not run yet when this returns.
    fn capture(&self, inputs: &[&CudaTensor], f: Work<'_>) -> Result<Captured> {
        let private = Arc::new(DevicePool::new(self.stream.clone()));
        *self.capture_pool.lock().unwrap_or_else(|e| e.into_inner()) = Some(private);
        let result = (|| {
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
            let output = f(&refs);
            // End the capture whatever f did, so the stream is usable again.
            let graph = self
                .stream
                .end_capture(CUgraphInstantiate_flags(0))
                .map_err(cuda_err);
            let (output, graph) = (output?, graph?);
            let graph = graph.ok_or_else(|| Error::internal("the capture recorded no work"))?;
            Ok(Captured {
                graph: SendGraph(graph),
                inputs: own,
                output,
            })
        })();
        *self.capture_pool.lock().unwrap_or_else(|e| e.into_inner()) = None;
        result
    }
}
