//! The CUDA backend: the hand-written kernels of kernels/*.cu (compiled by build.rs and embedded
//! in the binary) on one stream, behind the same op trait as the CPU reference. The driver is
//! loaded at run time, so this compiles and links everywhere; `unavailable_reason()` says
//! whether it can run here. Every op of the trait runs on the device, the input-VJPs of the
//! UNet's backward pass (DPS) included. Every device buffer comes from the backend's pool
//! (pool.rs) and returns to it on drop, so the steps of a sampler after the first make no device
//! allocation.
//!
//! Layout: this file holds the backend, its settings, the kernel registry and the trait's
//! one-line forwards; tensor.rs the device tensor; launch.rs the launch plumbing; each op family
//! has a file named like its kernels/<family>.cu and its CPU twin src/backend/cpu/<family>.rs
//! (diffpir.rs and cg.rs: the fused sampler steps and the device CG solve), each declaring the
//! kernels it loads; planes.rs the per-plane grid of the operators' kernels. graph.rs, pool.rs,
//! profile.rs: CUDA graphs, the buffer pool, the profiler.

mod attention;
mod blur;
mod cg;
mod checks;
mod conv;
mod ct;
mod diffpir;
mod downsample;
mod elementwise;
mod gemm;
mod graph;
mod groupnorm;
mod inpaint;
mod launch;
mod planes;
mod pool;
mod profile;
mod tensor;
mod tv;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

use super::{norm_then_conv, AttnParams, Backend, ConvAdd, CtGeometry, NormArgs};
use crate::bail;
use crate::error::{Error, Result};
use crate::precision::Precision;
use crate::tensor::Tensor;
use cudarc::driver::{CudaContext, CudaFunction, CudaStream};
use cudarc::nvrtc::Ptx;
use pool::DevicePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use attention::AttentionCore;
pub use conv::ConvKernel;
pub use graph::GraphStats;
pub use pool::AllocStats;
pub use tensor::CudaTensor;

/// Whether this binary carries compiled kernels (nvcc was found at build time).
pub fn kernels_embedded() -> bool {
    !embedded::KERNELS.is_empty()
}

/// nvcc's `-Xptxas -v` report of the embedded kernels.
pub fn ptxas_report() -> &'static str {
    embedded::PTXAS_REPORT
}

/// Whether the CUDA driver library can be loaded (checked before any driver call, which would
/// otherwise panic on a machine without one).
pub fn driver_present() -> bool {
    // SAFETY: only probes for the shared library.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Why CUDA cannot run here, or None when it can (kernels, driver and a device present).
pub fn unavailable_reason(ordinal: usize) -> Option<String> {
    if !kernels_embedded() {
        return Some("this binary was built without CUDA kernels (nvcc not found at build time; run scripts/install-nvcc.sh and rebuild)".into());
    }
    if !driver_present() {
        return Some("no CUDA driver (libcuda) on this machine".into());
    }
    match CudaContext::device_count() {
        Ok(n) if i32::try_from(ordinal).is_ok_and(|o| o < n) => None,
        Ok(n) => Some(format!("CUDA device {ordinal} requested but {n} present")),
        Err(e) => Some(format!("the CUDA driver reports: {e}")),
    }
}

fn cuda_err(e: cudarc::driver::DriverError) -> Error {
    Error::internal(format!("CUDA: {e}"))
}

pub struct CudaBackend {
    stream: Arc<CudaStream>,
    funcs: HashMap<String, CudaFunction>,
    name: String,
    /// Streaming multiprocessors: sizes decide between kernels by how many blocks fill the GPU.
    sm_count: usize,
    /// The attention core's path when forced (DIFFRECON_ATTENTION, with_attention_core).
    attention_core: Option<AttentionCore>,
    /// The conv kernels (DIFFRECON_CONV, with_conv_kernel).
    conv_kernel: ConvKernel,
    /// Fold GroupNorm into the conv that reads it (DIFFRECON_GN_FOLD, with_gn_fold).
    gn_fold: bool,
    /// The SGEMM tile edge when forced (32 or 64; with_gemm_tile), else chosen by size.
    gemm_tile: Option<usize>,
    /// Images per group of the attention GEMM path when forced (DIFFRECON_ATTENTION_GROUP,
    /// with_attention_group), else as many as the score budget holds.
    attention_group: Option<usize>,
    /// Split-K's per-tile slice counters (conv.rs), zeroed once and left zeroed by every
    /// kernel that uses them, so one buffer serves every launch and every captured graph.
    split_tiles_done: cudarc::driver::CudaSlice<u32>,
    /// The GEMMs' arithmetic (with_precision): f32, or the tensor-core kernels.
    precision: Precision,
    /// Per-kernel GPU time while recording (bench --profile).
    profiler: profile::KernelProfiler,
    /// Captured graphs of `Backend::replay` (graph.rs), and whether replay captures at all.
    graphs: graph::GraphCache,
    graphs_on: bool,
    /// The pool outputs come from while a graph is being captured (graph.rs), else None.
    capture_pool: Mutex<Option<Arc<DevicePool>>>,
    /// Fill every output with NaN before its kernel runs (fresh or reused buffer alike), so a
    /// kernel that skips an element cannot pass a parity test.
    poison: bool,
    /// Free device buffers by length: outputs are planned once per (batch, size).
    pool: Arc<DevicePool>,
}

/// Kernels per module (file stem of kernels/*.cu), each list declared beside its launches;
/// `CudaBackend::new` loads them all and fails if one is missing.
const FUNCTIONS: &[(&str, &[&str])] = &[
    ("elementwise", elementwise::KERNELS),
    ("gemm", gemm::KERNELS),
    ("cg", cg::KERNELS),
    ("conv", conv::KERNELS),
    ("groupnorm", groupnorm::KERNELS),
    ("attention", attention::KERNELS),
    ("blur", blur::KERNELS),
    ("diffpir", diffpir::KERNELS),
    ("ct", ct::KERNELS),
    ("downsample", downsample::KERNELS),
    ("inpaint", inpaint::KERNELS),
    ("tv", tv::KERNELS),
];

impl CudaBackend {
    /// Create a context on device `ordinal` and load every kernel module.
    pub fn new(ordinal: usize) -> Result<Self> {
        if let Some(why) = unavailable_reason(ordinal) {
            bail!("--device cuda:{ordinal} cannot run: {why}; use --device cpu");
        }
        let ctx = CudaContext::new(ordinal).map_err(cuda_err)?;
        // One stream for everything: no cross-stream event tracking needed.
        // SAFETY: called before any allocation on this context.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(cuda_err)?;
        let mut funcs = HashMap::new();
        for (module, bytes) in embedded::KERNELS {
            let m = ctx
                .load_module(Ptx::from_binary(bytes.to_vec()))
                .map_err(cuda_err)?;
            let names = FUNCTIONS
                .iter()
                .find(|(n, _)| n == module)
                .map(|(_, f)| *f)
                .unwrap_or(&[]);
            for name in names {
                funcs.insert(name.to_string(), m.load_function(name).map_err(cuda_err)?);
            }
        }
        for (module, names) in FUNCTIONS {
            if let Some(missing) = names.iter().find(|n| !funcs.contains_key(**n)) {
                return Err(Error::internal(format!(
                    "kernel '{missing}' of module '{module}' is not in this binary"
                )));
            }
        }
        let name = format!(
            "cuda:{ordinal} ({})",
            ctx.name().unwrap_or_else(|_| "unknown GPU".into())
        );
        let sm_count = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(cuda_err)?
            .max(1) as usize;
        let split_tiles_done = stream
            .alloc_zeros::<u32>(conv::SPLIT_TILE_COUNTERS)
            .map_err(cuda_err)?;
        Ok(CudaBackend {
            pool: Arc::new(DevicePool::new(stream.clone())),
            stream,
            funcs,
            name,
            sm_count,
            attention_core: attention::attention_core_from_env()?,
            conv_kernel: conv::conv_kernel_from_env()?,
            gn_fold: conv::gn_fold_from_env()?,
            gemm_tile: None,
            attention_group: attention::attention_group_from_env()?,
            split_tiles_done,
            precision: Precision::F32,
            profiler: Default::default(),
            graphs: Default::default(),
            graphs_on: graph::graphs_from_env(),
            capture_pool: Mutex::new(None),
            poison: false,
        })
    }

    /// Force the attention core's path (None: chosen by size); a head width over 128 always
    /// takes the GEMM path.
    pub fn with_attention_core(mut self, path: Option<AttentionCore>) -> Self {
        self.attention_core = path;
        self
    }

    /// Choose the conv kernels (forward and backward data).
    pub fn with_conv_kernel(mut self, kernel: ConvKernel) -> Self {
        self.conv_kernel = kernel;
        self
    }

    /// Fold each GroupNorm that feeds a conv into that conv's gather (`Backend::norm_conv2d`):
    /// the same bits, the normalised tensor never written. Needs the implicit-GEMM kernels (the
    /// direct ones compose the two ops).
    pub fn with_gn_fold(mut self, on: bool) -> Self {
        self.gn_fold = on;
        self
    }

    /// Run the GEMMs (implicit-GEMM convolutions and the SGEMMs of attention) at `precision`:
    /// f32, or the tensor-core kernels with TF32 / BF16 operands and f32 accumulation.
    pub fn with_precision(mut self, precision: Precision) -> Result<Self> {
        self.precision = precision;
        self.f32_only_kernels_unused()?;
        if precision != Precision::F32 {
            self.name = format!("{}, {precision} tensor cores", self.name);
        }
        Ok(self)
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Force the attention GEMM path's images per group (None: by the score budget; 1: one
    /// image at a time, as before grouping). Results are the same bits either way.
    pub fn with_attention_group(mut self, images: Option<usize>) -> Self {
        self.attention_group = images.filter(|&g| g >= 1);
        self
    }

    /// Force the SGEMM tile edge: Some(32) or Some(64) (kernel tests); None chooses by size.
    pub fn with_gemm_tile(mut self, tile: Option<usize>) -> Self {
        self.gemm_tile = tile.filter(|t| *t == 32 || *t == 64);
        self
    }

    /// Fill every freshly allocated output with NaN (for parity tests).
    pub fn with_poison(mut self, on: bool) -> Self {
        self.poison = on;
        self
    }

    /// The direct conv kernels, the 128×128 implicit-GEMM tile and the fused attention kernel
    /// have no tensor-core path: forcing one there is an
    /// error, checked when the precision is set and again at use (the `with_*` calls may come in
    /// either order).
    fn f32_only_kernels_unused(&self) -> Result<()> {
        let p = self.precision;
        if !self.conv_kernel.supports(p) {
            bail!("--precision {p}: the conv kernels DIFFRECON_CONV forces have no {p} path (direct and igemm128 are f32 only): unset DIFFRECON_CONV or use --precision f32");
        }
        if p != Precision::F32 && self.attention_core == Some(AttentionCore::Fused) {
            bail!("--precision {p} needs the attention GEMM path; unset DIFFRECON_ATTENTION=fused or use --precision f32");
        }
        Ok(())
    }

    fn f(&self, name: &'static str) -> &CudaFunction {
        self.profiler.name_next(name);
        &self.funcs[name]
    }

    /// How buffer requests were served so far: fresh device allocations vs. pooled reuses.
    /// After a sampler's first step, further steps of the same (batch, size) allocate nothing.
    pub fn alloc_stats(&self) -> AllocStats {
        self.pool.stats()
    }

    /// Number of device buffers waiting in the pool for reuse.
    pub fn pooled_buffers(&self) -> usize {
        self.pool.free_count()
    }

    /// Free the pooled buffers (e.g. before switching to another image size); live tensors
    /// are untouched. An allocation that finds the device full does this by itself.
    pub fn release_pooled_buffers(&self) {
        self.pool.release_free();
    }

    /// The pool new buffers come from: a graph's private pool during its capture, else the
    /// backend's.
    fn active_pool(&self) -> Arc<DevicePool> {
        let capture = self.capture_pool.lock().unwrap_or_else(|e| e.into_inner());
        capture.clone().unwrap_or_else(|| self.pool.clone())
    }

    /// Turn graph capture in `Backend::replay` on or off (default: on unless DIFFRECON_GRAPHS=0).
    pub fn with_graphs(mut self, on: bool) -> Self {
        self.graphs_on = on;
        self
    }

    /// How often `Backend::replay` captured and replayed a graph.
    pub fn graph_stats(&self) -> GraphStats {
        self.graphs.stats()
    }

    /// Wait for all queued work (and surface asynchronous kernel errors).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err)
    }
}

impl Backend for CudaBackend {
    type Buf = CudaTensor;
    type ConvWeight = CudaTensor;

    fn name(&self) -> String {
        self.name.clone()
    }

    fn profile_kernels(&self, on: bool) -> Result<Option<String>> {
        if on {
            self.profiler.set(true);
            return Ok(None);
        }
        self.profiler.set(false);
        Ok(Some(profile::table(&self.profiler.report()?)))
    }

    fn replay_many(
        &self,
        key: usize,
        inputs: &[&CudaTensor],
        f: super::DeviceWorkMany<'_, CudaTensor>,
    ) -> Result<Vec<CudaTensor>> {
        // Profiling brackets each launch with events, and poisoning fills outputs from the
        // host (not capturable): both run the work as it is.
        if !self.graphs_on || self.profiler.is_on() || self.poison {
            return f(inputs);
        }
        self.replay_graph(key, inputs, f)
    }

    fn upload(&self, t: &Tensor) -> Result<CudaTensor> {
        let mut data = self.active_pool().take_f32(t.len()).map_err(cuda_err)?;
        self.stream
            .memcpy_htod(t.data(), &mut data)
            .map_err(cuda_err)?;
        Ok(self.wrap(t.shape(), data))
    }

    fn download(&self, b: &CudaTensor) -> Result<Tensor> {
        let v = self.stream.clone_dtoh(b.dev()?).map_err(cuda_err)?;
        Tensor::new(b.shape.clone(), v)
    }

    fn shape<'a>(&self, b: &'a CudaTensor) -> &'a [usize] {
        &b.shape
    }

    fn conv_weight(&self, w: CudaTensor) -> Result<CudaTensor> {
        Ok(w)
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
    ) -> Result<CudaTensor> {
        self.conv(x, w, b, stride, pad, ConvAdd::Nothing, None)
    }

    fn conv2d_add_channel_bias(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
        v: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.conv(x, w, b, stride, pad, ConvAdd::Channel(v), None)
    }

    fn conv2d_add_residual(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
        residual: &CudaTensor,
    ) -> Result<CudaTensor> {
        self.conv(x, w, b, stride, pad, ConvAdd::Residual(residual), None)
    }

    fn conv2d_vjp(
        &self,
        dy: &CudaTensor,
        w: &CudaTensor,
        in_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<CudaTensor> {
        CudaBackend::conv2d_vjp(self, dy, w, in_shape, stride, pad)
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
        silu: bool,
    ) -> Result<CudaTensor> {
        CudaBackend::group_norm(self, x, gamma, beta, groups, silu)
    }

    fn group_norm_vjp(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
        silu: bool,
        dy: &CudaTensor,
    ) -> Result<CudaTensor> {
        CudaBackend::group_norm_vjp(self, x, gamma, beta, groups, silu, dy)
    }

    /// With the fold on (DIFFRECON_GN_FOLD=1, with_gn_fold) and the implicit GEMM: the norm's
    /// scale and shift per (image, channel) (a small launch), then the conv's _gn entry point,
    /// which normalises x as it gathers it. Else the norm kernel, then the conv.
    fn norm_conv2d(
        &self,
        x: &CudaTensor,
        norm: &NormArgs<'_, CudaTensor>,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
        add: ConvAdd<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
        if !self.gn_fold || self.conv_kernel == ConvKernel::Direct {
            return norm_then_conv(self, x, norm, w, b, stride, pad, add);
        }
        let ss = self.group_norm_scale_shift(x, norm.gamma, norm.beta, norm.groups)?;
        self.conv(x, w, b, stride, pad, add, Some((&ss, norm.silu)))
    }

    fn attention(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
    ) -> Result<CudaTensor> {
        CudaBackend::attention(self, y, p, heads, None)
    }

    fn attention_residual(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
        residual: &CudaTensor,
    ) -> Result<CudaTensor> {
        CudaBackend::attention(self, y, p, heads, Some(residual))
    }

    fn attention_vjp(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
        dout: &CudaTensor,
    ) -> Result<CudaTensor> {
        CudaBackend::attention_vjp(self, y, p, heads, dout)
    }

    fn linear_split(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        silu_input: bool,
        widths: &[usize],
    ) -> Result<Vec<CudaTensor>> {
        CudaBackend::linear_split(self, x, w, b, silu_input, widths)
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        silu_input: bool,
    ) -> Result<CudaTensor> {
        CudaBackend::linear(self, x, w, b, silu_input)
    }

    fn add_channel_bias(&self, h: &mut CudaTensor, v: &CudaTensor) -> Result<()> {
        CudaBackend::add_channel_bias(self, h, v)
    }

    fn add_assign(&self, a: &mut CudaTensor, b: &CudaTensor) -> Result<()> {
        CudaBackend::add_assign(self, a, b)
    }

    fn upsample2x(&self, x: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::upsample2x(self, x)
    }

    fn upsample2x_vjp(&self, dy: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::upsample2x_vjp(self, dy)
    }

    fn concat_channels(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::concat_channels(self, a, b)
    }

    fn split_channels(&self, x: &CudaTensor, ca: usize) -> Result<(CudaTensor, CudaTensor)> {
        CudaBackend::split_channels(self, x, ca)
    }

    fn blur(&self, x: &CudaTensor, kernel: &CudaTensor, adjoint: bool) -> Result<CudaTensor> {
        CudaBackend::blur(self, x, kernel, adjoint)
    }

    fn ct_project(&self, x: &CudaTensor, g: &CtGeometry, a: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::ct_project(self, x, g, a)
    }

    fn ct_backproject(&self, s: &CudaTensor, g: &CtGeometry, a: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::ct_backproject(self, s, g, a)
    }

    fn ct_ramp_filter(&self, s: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::ct_ramp_filter(self, s)
    }

    fn downsample(&self, x: &CudaTensor, f: usize) -> Result<CudaTensor> {
        CudaBackend::downsample(self, x, f)
    }

    fn downsample_adjoint(&self, y: &CudaTensor, f: usize) -> Result<CudaTensor> {
        CudaBackend::downsample_adjoint(self, y, f)
    }

    fn inpaint_mask(&self, x: &CudaTensor, m: &CudaTensor) -> Result<CudaTensor> {
        CudaBackend::inpaint_mask(self, x, m)
    }

    fn tv_dual_update(
        &self,
        px: &mut CudaTensor,
        py: &mut CudaTensor,
        xbar: &CudaTensor,
        step: f32,
        lam: f32,
    ) -> Result<()> {
        CudaBackend::tv_dual_update(self, px, py, xbar, step, lam)
    }

    fn tv_primal_update(
        &self,
        x: &mut CudaTensor,
        xbar: &mut CudaTensor,
        atq: &CudaTensor,
        px: &CudaTensor,
        py: &CudaTensor,
        step: f32,
    ) -> Result<()> {
        CudaBackend::tv_primal_update(self, x, xbar, atq, px, py, step)
    }

    fn lincomb(&self, a: &CudaTensor, ca: f32, b: &CudaTensor, cb: f32) -> Result<CudaTensor> {
        CudaBackend::lincomb(self, a, ca, b, cb)
    }

    fn predict_x0(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        sab: f32,
        s1m: f32,
    ) -> Result<CudaTensor> {
        CudaBackend::predict_x0(self, x, eps, sab, s1m)
    }

    fn clamp(&self, x: &mut CudaTensor, lo: f32, hi: f32) -> Result<()> {
        CudaBackend::clamp(self, x, lo, hi)
    }

    fn clamp_vjp(
        &self,
        reference: &CudaTensor,
        lo: f32,
        hi: f32,
        d: &mut CudaTensor,
    ) -> Result<()> {
        CudaBackend::clamp_vjp(self, reference, lo, hi, d)
    }

    fn sum_sq_per_item(&self, x: &CudaTensor) -> Result<Vec<f64>> {
        CudaBackend::sum_sq_per_item(self, x)
    }

    fn dot_per_item(&self, a: &CudaTensor, b: &CudaTensor) -> Result<Vec<f64>> {
        CudaBackend::dot_per_item(self, a, b)
    }

    fn prox_cg(
        &self,
        ata: super::NormalOp<'_, CudaTensor>,
        aty: &CudaTensor,
        x0: &CudaTensor,
        mu: &CudaTensor,
        max_iters: usize,
        tol: f64,
    ) -> Result<Option<(CudaTensor, CudaTensor)>> {
        self.prox_cg_on_device(ata, aty, x0, mu, max_iters, tol)
            .map(Some)
    }

    fn lincomb_per_item(
        &self,
        a: &CudaTensor,
        ca: &[f32],
        b: &CudaTensor,
        cb: &[f32],
    ) -> Result<CudaTensor> {
        CudaBackend::lincomb_per_item(self, a, ca, b, cb)
    }

    fn step_by_residual_norm(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        r: &CudaTensor,
        zeta: f64,
    ) -> Result<CudaTensor> {
        CudaBackend::step_by_residual_norm(self, a, b, r, zeta)
    }

    fn diffpir_prior(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        cur: (f32, f32),
        next: (f32, f32),
    ) -> Result<CudaTensor> {
        CudaBackend::diffpir_prior(self, x, eps, cur, next)
    }

    fn data_step(
        &self,
        xp: &CudaTensor,
        y: &CudaTensor,
        kernel: &CudaTensor,
        tau: f32,
    ) -> Result<CudaTensor> {
        CudaBackend::data_step(self, xp, y, kernel, tau)
    }
}
