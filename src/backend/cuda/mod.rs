//! The CUDA backend: the hand-written kernels of kernels/*.cu (compiled by build.rs and embedded
//! in the binary) on one stream, behind the same op trait as the CPU reference. The driver is
//! loaded at run time, so this compiles and links everywhere; `available()` says whether it can
//! run here. Every op of the trait runs on the device, the input-VJPs of the UNet's backward
//! pass (DPS) included. Every device buffer comes from the backend's pool (pool.rs) and returns
//! to it on drop, so the steps of a sampler after the first make no device allocation.

mod cg;
mod graph;
mod pool;
mod profile;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
}

use super::{AttnParams, Backend};
use crate::bail;
use crate::error::{Error, Result};
use crate::precision::{Precision, FUSED_ATTENTION_SCORES};
use crate::tensor::Tensor;
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, CudaView, CudaViewMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::Ptx;
pub use graph::GraphStats;
pub use pool::AllocStats;
use pool::DevicePool;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Threads per block of the 1-D kernels (kernels/common.cuh uses the same).
const BLOCK: u32 = 256;
/// Limits of kernels/attention.cu and kernels/conv.cu (they write nothing beyond them).
const MAX_HEAD_DIM: usize = 128;
const MAX_CONV_KERNEL: usize = 19;

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
        Ok(n) if (ordinal as i32) < n => None,
        Ok(n) => Some(format!("CUDA device {ordinal} requested but {n} present")),
        Err(e) => Some(format!("the CUDA driver reports: {e}")),
    }
}

fn cuda_err(e: cudarc::driver::DriverError) -> Error {
    Error::internal(format!("CUDA: {e}"))
}

/// A device tensor: NCHW f32, contiguous. Its buffer comes from the backend's pool and goes
/// back to it on drop; a clone copies into another pooled buffer.
pub struct CudaTensor {
    shape: Vec<usize>,
    /// Some for the tensor's whole life; taken only by `drop`.
    data: Option<CudaSlice<f32>>,
    pool: Arc<DevicePool>,
}

impl CudaTensor {
    fn dev(&self) -> &CudaSlice<f32> {
        self.data.as_ref().expect("a live tensor holds its buffer")
    }

    fn dev_mut(&mut self) -> &mut CudaSlice<f32> {
        self.data.as_mut().expect("a live tensor holds its buffer")
    }

    /// Number of elements.
    fn len(&self) -> usize {
        self.dev().len()
    }
}

impl Drop for CudaTensor {
    fn drop(&mut self) {
        if let Some(d) = self.data.take() {
            self.pool.give_f32(d);
        }
    }
}

impl Clone for CudaTensor {
    /// A device-to-device copy into a pooled buffer. Panics when the driver fails, as
    /// `CudaSlice::clone` does (`Clone` cannot return an error).
    fn clone(&self) -> Self {
        let mut data = self
            .pool
            .take_f32(self.len())
            .expect("CUDA: allocate a buffer for a tensor copy");
        self.pool
            .stream
            .memcpy_dtod(self.dev(), &mut data)
            .expect("CUDA: copy a tensor on the device");
        CudaTensor {
            shape: self.shape.clone(),
            data: Some(data),
            pool: self.pool.clone(),
        }
    }
}

impl std::fmt::Debug for CudaTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaTensor")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
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
    /// The SGEMM tile edge when forced (32 or 64; with_gemm_tile), else chosen by size.
    gemm_tile: Option<usize>,
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

/// Kernels per module (file stem of kernels/*.cu).
const FUNCTIONS: &[(&str, &[&str])] = &[
    (
        "elementwise",
        &[
            "add_channel_bias",
            "add_assign",
            "lincomb",
            "predict_x0",
            "clamp_inplace",
            "clamp_vjp",
            "upsample2x",
            "upsample2x_vjp",
            "concat_channels",
            "split_channels",
            "fill_rows",
            "linear",
            "sum_sq_per_item",
            "dot_per_item",
            "lincomb_per_item",
        ],
    ),
    (
        "gemm",
        &[
            "sgemm_strided",
            "sgemm_strided_32",
            "sgemm_strided_tf32",
            "sgemm_strided_32_tf32",
            "sgemm_strided_bf16",
            "sgemm_strided_32_bf16",
        ],
    ),
    ("cg", &["cg_init", "cg_alpha", "cg_beta"]),
    (
        "conv",
        &[
            "conv2d_fwd",
            "conv2d_fwd_chan",
            "conv2d_fwd_res",
            "conv2d_bwd_data",
            "conv2d_igemm_64",
            "conv2d_igemm_32",
            "conv2d_bwd_igemm_64",
            "conv2d_bwd_igemm_32",
            "conv2d_igemm_64_tf32",
            "conv2d_igemm_32_tf32",
            "conv2d_bwd_igemm_64_tf32",
            "conv2d_bwd_igemm_32_tf32",
            "conv2d_igemm_64_bf16",
            "conv2d_igemm_32_bf16",
            "conv2d_bwd_igemm_64_bf16",
            "conv2d_bwd_igemm_32_bf16",
            "conv2d_splitk_reduce",
        ],
    ),
    ("groupnorm", &["group_norm_fwd", "group_norm_vjp"]),
    (
        "attention",
        &[
            "attention_fwd",
            "attn_softmax_rows",
            "attn_softmax_vjp_rows",
        ],
    ),
    ("blur", &["blur", "blur_sub", "blur_t_step"]),
    ("diffpir", &["diffpir_prior"]),
];

/// The GEMM-shaped kernels' entry points, [64×64 tiles, 32×32 tiles], per precision (f32, tf32,
/// bf16): all of a row take the same arguments.
type EntryPoints = [[&'static str; 2]; 3];
const CONV_FWD: EntryPoints = [
    ["conv2d_igemm_64", "conv2d_igemm_32"],
    ["conv2d_igemm_64_tf32", "conv2d_igemm_32_tf32"],
    ["conv2d_igemm_64_bf16", "conv2d_igemm_32_bf16"],
];
const CONV_BWD: EntryPoints = [
    ["conv2d_bwd_igemm_64", "conv2d_bwd_igemm_32"],
    ["conv2d_bwd_igemm_64_tf32", "conv2d_bwd_igemm_32_tf32"],
    ["conv2d_bwd_igemm_64_bf16", "conv2d_bwd_igemm_32_bf16"],
];
const SGEMM: EntryPoints = [
    ["sgemm_strided", "sgemm_strided_32"],
    ["sgemm_strided_tf32", "sgemm_strided_32_tf32"],
    ["sgemm_strided_bf16", "sgemm_strided_32_bf16"],
];

fn entry_points(table: &EntryPoints, p: Precision) -> [&'static str; 2] {
    table[match p {
        Precision::F32 => 0,
        Precision::Tf32 => 1,
        Precision::Bf16 => 2,
    }]
}

fn dim(v: usize, what: &str) -> Result<i32> {
    i32::try_from(v)
        .map_err(|_| Error::input(format!("{what} = {v} is too large for the CUDA kernels")))
}

/// How the attention core runs: the fused kernel, or GEMMs + a softmax row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttentionCore {
    Fused,
    Gemm,
}

/// The fused kernel runs one thread per query, so for one image it leaves most of the GPU idle
/// (H200, 256 to 1024 tokens: 64 threads × 16–64 blocks, 0.1–0.2 ms); the GEMM path spreads each
/// image's t² scores over many blocks. The choice is made from one image's shape, never the
/// batch, so that a slice of a batch gets the bits it gets alone: the fused kernel where one
/// image gives it four blocks per multiprocessor (f32 only: the fused kernel has no tensor-core
/// path), or where the GEMM path's score buffer (heads·t² floats) would pass 256 MB (at any
/// precision: that core then runs in f32). Head widths over 128 always take the GEMM path.
fn attention_core_path(
    forced: Option<AttentionCore>,
    (d, t, heads): (usize, usize, usize),
    sms: usize,
    precision: Precision,
) -> AttentionCore {
    let fused_blocks = t.div_ceil(64) * heads;
    let scores = heads.saturating_mul(t).saturating_mul(t);
    let fused_fills_gpu = fused_blocks >= 4 * sms && precision == Precision::F32;
    match forced {
        _ if d > MAX_HEAD_DIM => AttentionCore::Gemm,
        Some(path) => path,
        None if fused_fills_gpu || scores > FUSED_ATTENTION_SCORES => AttentionCore::Fused,
        None => AttentionCore::Gemm,
    }
}

/// DIFFRECON_ATTENTION=fused|gemm forces the attention core's path (benchmarks, kernel tests).
fn attention_core_from_env() -> Result<Option<AttentionCore>> {
    match std::env::var("DIFFRECON_ATTENTION").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(None),
        Ok("fused") => Ok(Some(AttentionCore::Fused)),
        Ok("gemm") => Ok(Some(AttentionCore::Gemm)),
        Ok(other) => Err(Error::input(format!(
            "DIFFRECON_ATTENTION={other}: expected fused, gemm or auto"
        ))),
    }
}

/// Which conv kernels run: the implicit GEMM (default) or the direct kernels it replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKernel {
    /// conv2d_igemm_* / conv2d_bwd_igemm_*: tiled implicit GEMM, any k, the tile chosen by size.
    Igemm,
    /// The implicit GEMM with 32×32 tiles (kernel tests, benchmarks).
    Igemm32,
    /// The implicit GEMM with 64×64 tiles (kernel tests, benchmarks).
    Igemm64,
    /// conv2d_fwd* / conv2d_bwd_data: one block per (64 pixels, 16 channels), k ≤ 19.
    Direct,
}

/// DIFFRECON_CONV=igemm|igemm32|igemm64|direct chooses the conv kernels (benchmarks, kernel
/// regressions).
fn conv_kernel_from_env() -> Result<ConvKernel> {
    match std::env::var("DIFFRECON_CONV").as_deref() {
        Err(_) | Ok("") | Ok("igemm") => Ok(ConvKernel::Igemm),
        Ok("igemm32") => Ok(ConvKernel::Igemm32),
        Ok("igemm64") => Ok(ConvKernel::Igemm64),
        Ok("direct") => Ok(ConvKernel::Direct),
        Ok(other) => Err(Error::input(format!(
            "DIFFRECON_CONV={other}: expected igemm, igemm32, igemm64 or direct"
        ))),
    }
}

/// The implicit GEMM's tile edge for an M × N output, unless `kernel` forces one.
fn igemm_tile(kernel: ConvKernel, m: usize, n: usize, sms: usize) -> usize {
    match kernel {
        ConvKernel::Igemm32 => 32,
        ConvKernel::Igemm64 => 64,
        _ => tile_edge(m.div_ceil(64) * n.div_ceil(64), sms),
    }
}

/// The tile edge of the SGEMM and the implicit GEMM (both give the same bits either way): 64
/// while 64×64 tiles (`blocks_at_64` of them) still give two blocks per multiprocessor, else 32,
/// four times the blocks, for batch 1 at the low-resolution levels.
fn tile_edge(blocks_at_64: usize, sms: usize) -> usize {
    if blocks_at_64 >= 2 * sms {
        64
    } else {
        32
    }
}

/// Split-K slices for an implicit-GEMM conv with `rows` × `pix` outputs per image and `kterms`
/// terms each: as many as it takes for two 32×32-tile blocks per multiprocessor from one image,
/// each slice at least 128 terms, at most 8. Derived from one image's shape, not the batch, so
/// a slice of a batch gets the bits it gets alone.
fn igemm_k_split(rows: usize, pix: usize, kterms: usize, sms: usize) -> usize {
    let blocks = rows.div_ceil(32) * pix.div_ceil(32);
    if blocks >= 2 * sms {
        1
    } else {
        (2 * sms).div_ceil(blocks).min(kterms / 128).clamp(1, 8)
    }
}

fn grid1d(len: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((len as u32).div_ceil(BLOCK).max(1), 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of BLOCK threads per (group, image): the GroupNorm kernels.
fn per_group_cfg(groups: usize, n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (groups as u32, n as u32, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// One block of BLOCK threads per batch item: the per-item reductions.
fn per_item_cfg(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n as u32, 1, 1),
        block_dim: (BLOCK, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn dims4(t: &CudaTensor) -> (usize, usize, usize, usize) {
    match *t.shape.as_slice() {
        [n, c, h, w] => (n, c, h, w),
        ref s => panic!("expected an NCHW tensor, got shape {s:?}"),
    }
}

/// What the conv kernel adds to conv(x) + bias before it stores an output.
enum Epilogue<'a> {
    None,
    /// v[image, channel], (n, cout): the time-embedding add of a ResBlock's conv1.
    Channel(&'a CudaTensor),
    /// A tensor of the output's shape: the residual add of a ResBlock's conv2.
    Residual(&'a CudaTensor),
}

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
        Ok(CudaBackend {
            pool: Arc::new(DevicePool::new(stream.clone())),
            stream,
            funcs,
            name,
            sm_count,
            attention_core: attention_core_from_env()?,
            conv_kernel: conv_kernel_from_env()?,
            gemm_tile: None,
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

    /// The direct conv kernels and the fused attention kernel have no tensor-core path: forcing
    /// one at TF32 / BF16 is an error, checked when the precision is set and again at use (the
    /// `with_*` calls may come in either order).
    fn f32_only_kernels_unused(&self) -> Result<()> {
        let p = self.precision;
        if p != Precision::F32 && self.conv_kernel == ConvKernel::Direct {
            bail!("--precision {p} needs the implicit-GEMM convolutions; unset DIFFRECON_CONV=direct or use --precision f32");
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

    /// A pooled buffer of `shape` around `data` (which came from the active pool).
    fn wrap(&self, shape: &[usize], data: CudaSlice<f32>) -> CudaTensor {
        CudaTensor {
            shape: shape.to_vec(),
            data: Some(data),
            pool: self.active_pool(),
        }
    }

    /// An output buffer from the pool, its contents unspecified (every kernel writes all of
    /// its output), or all NaN under `with_poison`.
    fn output(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n: usize = shape.iter().product();
        let mut data = self.active_pool().take_f32(n).map_err(cuda_err)?;
        if self.poison {
            self.stream
                .memcpy_htod(&vec![f32::NAN; n], &mut data)
                .map_err(cuda_err)?;
        }
        Ok(self.wrap(shape, data))
    }

    /// f64 scratch of `n` values for a per-item reduction (NaN under `with_poison`).
    fn scratch_f64(&self, n: usize) -> Result<CudaSlice<f64>> {
        let mut out = self.active_pool().take_f64(n).map_err(cuda_err)?;
        if self.poison {
            self.stream
                .memcpy_htod(&vec![f64::NAN; n], &mut out)
                .map_err(cuda_err)?;
        }
        Ok(out)
    }

    /// Run a per-item reduction kernel (grid = n, block = 256) that writes `out[item]` and
    /// download the n values; the scratch goes back to the pool.
    fn per_item_reduce(
        &self,
        n: usize,
        launch: impl FnOnce(&mut CudaSlice<f64>, LaunchConfig) -> Result<()>,
    ) -> Result<Vec<f64>> {
        let mut out = self.scratch_f64(n)?;
        let cfg = per_item_cfg(n);
        let result =
            launch(&mut out, cfg).and_then(|()| self.stream.clone_dtoh(&out).map_err(cuda_err));
        self.active_pool().give_f64(out);
        result
    }

    /// Wait for all queued work (and surface asynchronous kernel errors).
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(cuda_err)
    }

    /// C = A·B + beta·C over `batch` matrices with strides, through sgemm_strided. A is
    /// (view, row stride, column stride, batch stride), B likewise; C is row-major with row
    /// stride `c_rs` and batch stride `c_bs`. Every view must hold every element the kernel
    /// touches (checked: the kernel has no bounds of its own beyond m, n, k).
    #[allow(clippy::too_many_arguments)]
    fn gemm(
        &self,
        (m, n, k): (usize, usize, usize),
        a: (&CudaView<'_, f32>, usize, usize, usize),
        b: (&CudaView<'_, f32>, usize, usize, usize),
        c: &mut CudaViewMut<'_, f32>,
        c_rs: usize,
        c_bs: usize,
        beta: f32,
        batch: usize,
    ) -> Result<()> {
        if m == 0 || n == 0 || k == 0 || batch == 0 {
            return Err(Error::internal(format!(
                "gemm: empty product ({m}×{k})·({k}×{n}) × {batch}"
            )));
        }
        // One past the last element a (rows × cols, strides rs, cs) matrix batch reaches.
        let span = |rows: usize, cols: usize, rs: usize, cs: usize, bs: usize| -> Option<usize> {
            (batch - 1)
                .checked_mul(bs)?
                .checked_add((rows - 1).checked_mul(rs)?)?
                .checked_add((cols - 1).checked_mul(cs)?)?
                .checked_add(1)
        };
        for (what, need, have) in [
            ("A", span(m, k, a.1, a.2, a.3), a.0.len()),
            ("B", span(k, n, b.1, b.2, b.3), b.0.len()),
            ("C", span(m, n, c_rs, 1, c_bs), c.len()),
        ] {
            if need.is_none_or(|need| need > have) {
                return Err(Error::internal(format!(
                    "gemm ({m}×{k})·({k}×{n}) × {batch}: operand {what} reaches {need:?} of {have} values"
                )));
            }
        }
        let (mi, ni, ki) = (dim(m, "m")?, dim(n, "n")?, dim(k, "k")?);
        // Offsets inside one matrix are ints in the kernel; batch offsets are 64-bit.
        for (rows, cols, rs, cs) in [(m, k, a.1, a.2), (k, n, b.1, b.2), (m, n, c_rs, 1)] {
            dim((rows - 1) * rs + (cols - 1) * cs, "GEMM offset")?;
        }
        let (a_rs, a_cs, b_rs, b_cs, c_rs) =
            (a.1 as i32, a.2 as i32, b.1 as i32, b.2 as i32, c_rs as i32);
        let (a_bs, b_bs, c_bs) = (a.3 as i64, b.3 as i64, c_bs as i64);
        let tile = self
            .gemm_tile
            .unwrap_or_else(|| tile_edge(m.div_ceil(64) * n.div_ceil(64) * batch, self.sm_count));
        let cfg = LaunchConfig {
            grid_dim: (
                (n as u32).div_ceil(tile as u32),
                (m as u32).div_ceil(tile as u32),
                batch as u32,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let [k64, k32] = entry_points(&SGEMM, self.precision);
        let kernel = if tile == 64 { k64 } else { k32 };
        let mut l = self.stream.launch_builder(self.f(kernel));
        l.arg(&mi)
            .arg(&ni)
            .arg(&ki)
            .arg(a.0)
            .arg(&a_rs)
            .arg(&a_cs)
            .arg(b.0)
            .arg(&b_rs)
            .arg(&b_cs);
        l.arg(c)
            .arg(&c_rs)
            .arg(&beta)
            .arg(&a_bs)
            .arg(&b_bs)
            .arg(&c_bs);
        self.run(l, cfg)?;
        Ok(())
    }

    /// P = softmax(scale·qᵀk) of image `b` into `probs` (heads × t × t), batched over heads:
    /// the scores of the GEMM forward and of the VJP's recomputation. Returns the image's q, k
    /// and v (d × t per head, row stride t, head stride d·t).
    fn attention_probs<'a>(
        &self,
        qkv: &'a CudaTensor,
        b: usize,
        (c, t, heads): (usize, usize, usize),
        probs: &mut CudaTensor,
    ) -> Result<[CudaView<'a, f32>; 3]> {
        let d = c / heads;
        let (ct, dt, tt) = (c * t, d * t, t * t);
        let (ti, scale) = (dim(t, "tokens")?, 1.0 / (d as f32).sqrt());
        let qkv_b = qkv.dev().slice(b * 3 * ct..(b + 1) * 3 * ct);
        let [q, k, v] = [0, 1, 2].map(|part| qkv_b.slice(part * ct..(part + 1) * ct));
        // S (t × t) = qᵀ·k: A(i, e) = q[e][i].
        self.gemm(
            (t, t, d),
            (&q, 1, t, dt),
            (&k, t, 1, dt),
            &mut probs.dev_mut().as_view_mut(),
            t,
            tt,
            0.0,
            heads,
        )?;
        let mut l = self.stream.launch_builder(self.f("attn_softmax_rows"));
        l.arg(probs.dev_mut()).arg(&ti).arg(&scale);
        self.attn_rows(l, heads * t)?;
        Ok([q, k, v])
    }

    /// ctx (n, c, t) of the attention core by the fused online-softmax kernel: one thread per
    /// query, 64 queries per block.
    fn attention_core_fused(
        &self,
        qkv: &CudaTensor,
        n: usize,
        c: usize,
        t: usize,
        heads: usize,
    ) -> Result<CudaTensor> {
        let mut ctx = self.output(&[n, c, t])?;
        let (ci, ti, hi) = (c as i32, t as i32, heads as i32);
        let cfg = LaunchConfig {
            grid_dim: ((t as u32).div_ceil(64), heads as u32, n as u32),
            block_dim: (64, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut l = self.stream.launch_builder(self.f("attention_fwd"));
        l.arg(qkv.dev())
            .arg(ctx.dev_mut())
            .arg(&ci)
            .arg(&ti)
            .arg(&hi);
        self.run(l, cfg)?;
        Ok(ctx)
    }

    /// ctx (n, c, t) of the attention core through GEMMs, image by image, batched over heads:
    /// S = qᵀk (t × t per head), P = softmax(scale·S) by rows, ctx = v·Pᵀ (the first half of
    /// attention_vjp's recomputation). Any head width.
    fn attention_core_gemm(
        &self,
        qkv: &CudaTensor,
        n: usize,
        c: usize,
        t: usize,
        heads: usize,
    ) -> Result<CudaTensor> {
        let d = c / heads;
        dim(n * 3 * c * t, "attention size")?;
        dim(heads * t * t, "attention scores size")?;
        let mut ctx = self.output(&[n, c, t])?;
        let mut probs = self.output(&[heads, t, t])?;
        let (ct, dt, tt) = (c * t, d * t, t * t);
        for b in 0..n {
            let [_, _, v] = self.attention_probs(qkv, b, (c, t, heads), &mut probs)?;
            // ctx (d × t) = v (d × t)·Pᵀ: B(j, i) = P[i][j].
            let mut ctx_b = ctx.dev_mut().slice_mut(b * ct..(b + 1) * ct);
            self.gemm(
                (d, t, t),
                (&v, t, 1, dt),
                (&probs.dev().as_view(), 1, t, tt),
                &mut ctx_b,
                t,
                dt,
                0.0,
                heads,
            )?;
        }
        Ok(ctx)
    }

    /// conv2d_fwd and its fused variants (kernels/conv.cu): y = conv(x) + bias, plus the
    /// epilogue's term.
    fn conv(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
        epi: Epilogue<'_>,
    ) -> Result<CudaTensor> {
        let (n, cin, h, wd) = dims4(x);
        let (cout, k) = (w.shape[0], w.shape[2]);
        if k > MAX_CONV_KERNEL && self.conv_kernel == ConvKernel::Direct {
            bail!("conv kernel size {k} exceeds the direct CUDA kernel's limit of {MAX_CONV_KERNEL}; use DIFFRECON_CONV=igemm or --device cpu");
        }
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (wd + 2 * pad - k) / stride + 1,
        );
        let out_shape = [n, cout, ho, wo];
        // The epilogue's operand must match the output exactly: the kernel indexes it by the
        // output's (image, channel, pixel) without bounds of its own.
        let (direct_kernel, epi_code, extra) = match epi {
            Epilogue::None => ("conv2d_fwd", 0i32, None),
            Epilogue::Channel(v) => {
                if v.len() != n * cout {
                    return Err(Error::internal(format!(
                        "conv2d_add_channel_bias: {:?} values for an output of {out_shape:?}",
                        v.shape
                    )));
                }
                ("conv2d_fwd_chan", 1, Some(v))
            }
            Epilogue::Residual(r) => {
                if r.shape != out_shape {
                    return Err(Error::internal(format!(
                        "conv2d_add_residual: residual {:?} for an output of {out_shape:?}",
                        r.shape
                    )));
                }
                ("conv2d_fwd_res", 2, Some(r))
            }
        };
        let mut y = self.output(&out_shape)?;
        let args = [n, cin, h, wd, cout, k, stride, pad, ho, wo]
            .iter()
            .map(|&v| dim(v, "conv size"))
            .collect::<Result<Vec<i32>>>()?;
        dim(n * cout * ho * wo, "conv output size")?;
        dim(n * cin * h * wd, "conv input size")?;
        dim(w.len(), "conv weight size")?;
        match self.conv_kernel {
            ConvKernel::Igemm | ConvKernel::Igemm32 | ConvKernel::Igemm64 => self.igemm(
                entry_points(&CONV_FWD, self.precision),
                (x, w, Some(b), extra, epi_code),
                &mut y,
                &args,
                (cout, ho * wo, cin * k * k),
            )?,
            ConvKernel::Direct => {
                self.f32_only_kernels_unused()?;
                let cfg = LaunchConfig {
                    grid_dim: (
                        ((ho * wo) as u32).div_ceil(64),
                        (cout as u32).div_ceil(16),
                        n as u32,
                    ),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut l = self.stream.launch_builder(self.f(direct_kernel));
                l.arg(x.dev()).arg(w.dev()).arg(b.dev());
                if let Some(e) = extra {
                    l.arg(e.dev());
                }
                l.arg(y.dev_mut());
                for a in &args {
                    l.arg(a);
                }
                self.run(l, cfg)?;
            }
        }
        Ok(y)
    }

    /// One implicit-GEMM conv (kernels/conv.cu): `out` (n images × rows × pix) from `input`
    /// (x, or dy for the backward, which has no bias) and the weights; `args` = (n, cin, h, w,
    /// cout, k, stride, pad, ho, wo). With split-K the slices' partial sums go to a pooled
    /// workspace and conv2d_splitk_reduce adds them to the bias and applies the epilogue.
    /// `kernels` names the entry points with 64×64 and 32×32 tiles.
    #[allow(clippy::type_complexity)]
    fn igemm(
        &self,
        kernels: [&'static str; 2],
        (input, w, bias, extra, epi): (
            &CudaTensor,
            &CudaTensor,
            Option<&CudaTensor>,
            Option<&CudaTensor>,
            i32,
        ),
        out: &mut CudaTensor,
        args: &[i32],
        (rows, pix, kterms): (usize, usize, usize),
    ) -> Result<()> {
        let total = out.len();
        let tile = igemm_tile(self.conv_kernel, rows, total / rows, self.sm_count);
        let name = if tile == 64 { kernels[0] } else { kernels[1] };
        let k_split = igemm_k_split(rows, pix, kterms, self.sm_count);
        dim(k_split * total, "split-K workspace")?;
        let mut partial = match k_split {
            1 => None,
            _ => Some(self.output(&[k_split, total])?),
        };
        let cfg = LaunchConfig {
            grid_dim: (
                ((total / rows) as u32).div_ceil(tile as u32),
                (rows as u32).div_ceil(tile as u32),
                k_split as u32,
            ),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let ks = k_split as i32;
        let mut l = self.stream.launch_builder(self.f(name));
        l.arg(input.dev()).arg(w.dev());
        if let Some(b) = bias {
            // Without an epilogue the kernel never reads `extra`: pass the bias.
            l.arg(b.dev())
                .arg(extra.map_or(b.dev(), |e| e.dev()))
                .arg(&epi);
        }
        l.arg(out.dev_mut());
        for a in args {
            l.arg(a);
        }
        l.arg(&ks);
        // Unsplit, the kernel neither reads nor writes `partial`: pass the weights.
        match partial.as_mut() {
            Some(p) => l.arg(p.dev_mut()),
            None => l.arg(w.dev()),
        };
        self.run(l, cfg)?;
        let Some(partial) = partial else {
            return Ok(());
        };
        let null_ptr: u64 = 0; // the backward has no bias and no epilogue operand
        let (ri, pi, ti) = (rows as i32, pix as i32, total as i32);
        let mut l = self.stream.launch_builder(self.f("conv2d_splitk_reduce"));
        l.arg(partial.dev());
        match bias {
            Some(b) => l.arg(b.dev()).arg(extra.map_or(b.dev(), |e| e.dev())),
            None => l.arg(&null_ptr).arg(&null_ptr),
        };
        l.arg(&epi)
            .arg(out.dev_mut())
            .arg(&ks)
            .arg(&ri)
            .arg(&pi)
            .arg(&ti);
        self.run(l, grid1d(total))
    }

    /// rows × cols bias rows for each of `batch` matrices: c[b][r][j] = bias[r].
    fn fill_rows(
        &self,
        c: &mut CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        rows: usize,
        cols: usize,
        batch: usize,
    ) -> Result<()> {
        let (r, co, b) = (dim(rows, "rows")?, dim(cols, "cols")?, dim(batch, "batch")?);
        let mut l = self.stream.launch_builder(self.f("fill_rows"));
        l.arg(c).arg(bias).arg(&r).arg(&co).arg(&b);
        self.run(l, grid1d(batch * rows * cols))?;
        Ok(())
    }

    /// Launch a built kernel call.
    fn run(&self, mut l: cudarc::driver::LaunchArgs, cfg: LaunchConfig) -> Result<()> {
        self.profiler.around(&self.stream, || {
            // SAFETY: every caller pushes the arguments of its kernel's ABI (kernels/README.md)
            // in order, with sizes taken from the tensors' shapes.
            unsafe { l.launch(cfg) }.map_err(cuda_err)?;
            Ok(())
        })
    }

    fn blur_cfg(planes: usize, h: usize, w: usize) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (
                (w as u32).div_ceil(16),
                (h as u32).div_ceil(16),
                planes as u32,
            ),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        }
    }

    /// ca[i]·a + cb[i]·b with the coefficients already on the device: `coef` = [ca | cb], 2n
    /// values (the CG loop writes them there without the host).
    fn lincomb_per_item_dev(
        &self,
        a: &CudaTensor,
        b: &CudaTensor,
        coef: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, per) = self.items(a)?;
        Self::same_len(a, b, "lincomb_per_item")?;
        if coef.len() != 2 * n {
            return Err(Error::internal(format!(
                "lincomb_per_item: {} coefficients for {n} items",
                coef.len()
            )));
        }
        // Fits an int: checked by items().
        let len = a.len();
        let ni = n as i32;
        let mut out = self.output(&a.shape)?;
        let mut l = self.stream.launch_builder(self.f("lincomb_per_item"));
        l.arg(a.dev())
            .arg(b.dev())
            .arg(coef.dev())
            .arg(out.dev_mut())
            .arg(&ni)
            .arg(&per);
        self.run(l, grid1d(len))?;
        debug_assert_eq!(len, n * per as usize);
        Ok(out)
    }

    /// (items, values per item) of a batch tensor, both checked to fit the kernels' ints.
    fn items(&self, x: &CudaTensor) -> Result<(usize, i32)> {
        let n = x.shape.first().copied().unwrap_or(0);
        if n == 0 {
            return Err(Error::internal("a per-item op on an empty batch"));
        }
        dim(n, "batch")?;
        dim(x.len(), "tensor size")?;
        Ok((n, dim(x.len() / n, "slice size")?))
    }

    fn same_len(a: &CudaTensor, b: &CudaTensor, op: &str) -> Result<()> {
        if a.len() != b.len() {
            return Err(Error::internal(format!(
                "{op}: operands of shapes {:?} and {:?}",
                a.shape, b.shape
            )));
        }
        Ok(())
    }

    /// qkv (n, 3c, t) = in_w · y + in_b: the q, k, v rows of every image, channel-major.
    fn project_in(&self, y: &CudaTensor, p: &AttnParams<CudaTensor>) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(y);
        let t = h * w;
        let mut qkv = self.output(&[n, 3 * c, t])?;
        self.fill_rows(qkv.dev_mut(), p.in_b.dev(), 3 * c, t, n)?;
        self.gemm(
            (3 * c, t, c),
            (&p.in_w.dev().as_view(), c, 1, 0),
            (&y.dev().as_view(), t, 1, c * t),
            &mut qkv.dev_mut().as_view_mut(),
            t,
            3 * c * t,
            1.0,
            n,
        )?;
        Ok(qkv)
    }

    /// One row kernel of attention.cu over `rows` rows of t values (grid = rows, block = 256).
    fn attn_rows(&self, l: cudarc::driver::LaunchArgs, rows: usize) -> Result<()> {
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        self.run(l, cfg)
    }
}

impl Backend for CudaBackend {
    type Buf = CudaTensor;

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

    fn replay(
        &self,
        key: usize,
        inputs: &[&CudaTensor],
        f: super::DeviceWork<'_, CudaTensor>,
    ) -> Result<CudaTensor> {
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
        let v = self.stream.clone_dtoh(b.dev()).map_err(cuda_err)?;
        Tensor::new(b.shape.clone(), v)
    }

    fn shape<'a>(&self, b: &'a CudaTensor) -> &'a [usize] {
        &b.shape
    }

    fn conv2d(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        stride: usize,
        pad: usize,
    ) -> Result<CudaTensor> {
        self.conv(x, w, b, stride, pad, Epilogue::None)
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
        self.conv(x, w, b, stride, pad, Epilogue::Channel(v))
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
        self.conv(x, w, b, stride, pad, Epilogue::Residual(residual))
    }

    fn conv2d_vjp(
        &self,
        dy: &CudaTensor,
        w: &CudaTensor,
        in_shape: &[usize],
        stride: usize,
        pad: usize,
    ) -> Result<CudaTensor> {
        let [n, cin, h, wd] = *in_shape else {
            bail!("conv2d_vjp: input shape {in_shape:?} is not NCHW");
        };
        let [cout, wcin, k, k2] = *w.shape.as_slice() else {
            bail!(
                "conv2d_vjp: weight shape {:?} is not (cout, cin, k, k)",
                w.shape
            );
        };
        if wcin != cin || k2 != k || k == 0 || stride == 0 || h + 2 * pad < k || wd + 2 * pad < k {
            return Err(Error::internal(format!(
                "conv2d_vjp: weight {:?}, input {in_shape:?}, stride {stride}, pad {pad}",
                w.shape
            )));
        }
        if k > MAX_CONV_KERNEL && self.conv_kernel == ConvKernel::Direct {
            bail!("conv kernel size {k} exceeds the direct CUDA kernel's limit of {MAX_CONV_KERNEL}; use DIFFRECON_CONV=igemm or --device cpu");
        }
        let (ho, wo) = (
            (h + 2 * pad - k) / stride + 1,
            (wd + 2 * pad - k) / stride + 1,
        );
        // The kernel indexes dy by (image, co, oy, ox) with no bounds of its own.
        if dy.shape != [n, cout, ho, wo] {
            return Err(Error::internal(format!(
                "conv2d_vjp: dy {:?} for an output of {:?}",
                dy.shape,
                [n, cout, ho, wo]
            )));
        }
        dim(n * cin * h * wd, "conv input size")?;
        dim(n * cout * ho * wo, "conv output size")?;
        dim(w.len(), "conv weight size")?;
        let args = [n, cin, h, wd, cout, k, stride, pad, ho, wo]
            .iter()
            .map(|&v| dim(v, "conv size"))
            .collect::<Result<Vec<i32>>>()?;
        let mut dx = self.output(in_shape)?;
        match self.conv_kernel {
            // C (cin × n·h·w) as an implicit GEMM.
            ConvKernel::Igemm | ConvKernel::Igemm32 | ConvKernel::Igemm64 => self.igemm(
                entry_points(&CONV_BWD, self.precision),
                (dy, w, None, None, 0),
                &mut dx,
                &args,
                (cin, h * wd, cout * k * k),
            )?,
            // One thread per dx element: grid = (pixels / 256, cin, n).
            ConvKernel::Direct => {
                self.f32_only_kernels_unused()?;
                let cfg = LaunchConfig {
                    grid_dim: (((h * wd) as u32).div_ceil(BLOCK), cin as u32, n as u32),
                    block_dim: (BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut l = self.stream.launch_builder(self.f("conv2d_bwd_data"));
                l.arg(dy.dev()).arg(w.dev()).arg(dx.dev_mut());
                for a in &args {
                    l.arg(a);
                }
                self.run(l, cfg)?;
            }
        }
        Ok(dx)
    }

    fn group_norm(
        &self,
        x: &CudaTensor,
        gamma: &CudaTensor,
        beta: &CudaTensor,
        groups: usize,
        silu: bool,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        let mut y = self.output(&x.shape)?;
        let (ci, hw, g, s) = (c as i32, (h * w) as i32, groups as i32, silu as i32);
        let cfg = per_group_cfg(groups, n);
        let mut l = self.stream.launch_builder(self.f("group_norm_fwd"));
        l.arg(x.dev())
            .arg(gamma.dev())
            .arg(beta.dev())
            .arg(y.dev_mut())
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(y)
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
        let (n, c, h, w) = dims4(x);
        if groups == 0 || c % groups != 0 || dy.shape != x.shape || gamma.len() != c {
            return Err(Error::internal(format!(
                "group_norm_vjp: x {:?}, dy {:?}, {} γ values, {groups} groups",
                x.shape,
                dy.shape,
                gamma.len()
            )));
        }
        dim(x.len(), "tensor size")?;
        let mut dx = self.output(&x.shape)?;
        let (ci, hw, g, s) = (c as i32, (h * w) as i32, groups as i32, silu as i32);
        // One block per (group, image), as the forward.
        let cfg = per_group_cfg(groups, n);
        let mut l = self.stream.launch_builder(self.f("group_norm_vjp"));
        l.arg(x.dev())
            .arg(gamma.dev())
            .arg(beta.dev())
            .arg(dy.dev())
            .arg(dx.dev_mut())
            .arg(&ci)
            .arg(&hw)
            .arg(&g)
            .arg(&s);
        self.run(l, cfg)?;
        Ok(dx)
    }

    fn attention(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(y);
        let t = h * w;
        if heads == 0 || c % heads != 0 {
            return Err(Error::internal(format!(
                "attention: {c} channels in {heads} heads"
            )));
        }
        self.f32_only_kernels_unused()?;
        let qkv = self.project_in(y, p)?;
        let ctx = match attention_core_path(
            self.attention_core,
            (c / heads, t, heads),
            self.sm_count,
            self.precision,
        ) {
            AttentionCore::Fused => self.attention_core_fused(&qkv, n, c, t, heads)?,
            AttentionCore::Gemm => self.attention_core_gemm(&qkv, n, c, t, heads)?,
        };
        // out (n, c, t) = out_w · ctx + out_b.
        let mut out = self.output(&y.shape)?;
        self.fill_rows(out.dev_mut(), p.out_b.dev(), c, t, n)?;
        self.gemm(
            (c, t, c),
            (&p.out_w.dev().as_view(), c, 1, 0),
            (&ctx.dev().as_view(), t, 1, c * t),
            &mut out.dev_mut().as_view_mut(),
            t,
            c * t,
            1.0,
            n,
        )?;
        Ok(out)
    }

    /// The CPU's attention_vjp (attention.rs) as GEMMs and two row kernels: qkv is recomputed,
    /// dctx = out_wᵀ·dout, then per image, batched over heads (z = head), with
    /// S = qᵀk (t × t per head, row = query):
    ///   P = softmax(scale·S);  dP = dctxᵀ·v;  dS = scale·P ⊙ (dP − rowsum(dP ⊙ P));
    ///   dv = dctx·P;  dq = k·dSᵀ;  dk = q·dS;
    /// and dy = in_wᵀ·dqkv. P and dS (heads·t² each) are reused from image to image.
    fn attention_vjp(
        &self,
        y: &CudaTensor,
        p: &AttnParams<CudaTensor>,
        heads: usize,
        dout: &CudaTensor,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(y);
        let t = h * w;
        if heads == 0 || c % heads != 0 || dout.shape != y.shape {
            return Err(Error::internal(format!(
                "attention_vjp: y {:?}, dout {:?}, {heads} heads",
                y.shape, dout.shape
            )));
        }
        let d = c / heads;
        dim(n * 3 * c * t, "attention size")?;
        dim(heads * t * t, "attention scores size")?;
        let (ti, scale) = (dim(t, "tokens")?, 1.0 / (d as f32).sqrt());
        let qkv = self.project_in(y, p)?;
        // dctx (n, c, t) = out_wᵀ · dout: A(i, p) = out_w[p][i].
        let mut dctx = self.output(&[n, c, t])?;
        self.gemm(
            (c, t, c),
            (&p.out_w.dev().as_view(), 1, c, 0),
            (&dout.dev().as_view(), t, 1, c * t),
            &mut dctx.dev_mut().as_view_mut(),
            t,
            c * t,
            0.0,
            n,
        )?;
        let mut dqkv = self.output(&[n, 3 * c, t])?;
        let mut probs = self.output(&[heads, t, t])?;
        let mut ds = self.output(&[heads, t, t])?;
        let (ct, dt, tt) = (c * t, d * t, t * t);
        for b in 0..n {
            // Head h of image b: q rows at qkv[b·3ct + h·dt ..], k at + ct, v at + 2ct (d × t
            // each, row stride t), dctx rows at dctx[b·ct + h·dt ..]; batch stride dt.
            let [q, k, v] = self.attention_probs(&qkv, b, (c, t, heads), &mut probs)?;
            let dctx_b = dctx.dev().slice(b * ct..(b + 1) * ct);
            // dP (t × t) = dctxᵀ·v: A(i, e) = dctx[e][i]; into ds, finished in place.
            self.gemm(
                (t, t, d),
                (&dctx_b, 1, t, dt),
                (&v, t, 1, dt),
                &mut ds.dev_mut().as_view_mut(),
                t,
                tt,
                0.0,
                heads,
            )?;
            let mut l = self.stream.launch_builder(self.f("attn_softmax_vjp_rows"));
            l.arg(probs.dev()).arg(ds.dev_mut()).arg(&ti).arg(&scale);
            self.attn_rows(l, heads * t)?;
            let mut dqkv_b = dqkv.dev_mut().slice_mut(b * 3 * ct..(b + 1) * 3 * ct);
            // dv (d × t) = dctx (d × t)·P (t × t).
            self.gemm(
                (d, t, t),
                (&dctx_b, t, 1, dt),
                (&probs.dev().as_view(), t, 1, tt),
                &mut dqkv_b.slice_mut(2 * ct..3 * ct),
                t,
                dt,
                0.0,
                heads,
            )?;
            // dq (d × t) = k (d × t)·dSᵀ: B(j, i) = dS[i][j].
            self.gemm(
                (d, t, t),
                (&k, t, 1, dt),
                (&ds.dev().as_view(), 1, t, tt),
                &mut dqkv_b.slice_mut(0..ct),
                t,
                dt,
                0.0,
                heads,
            )?;
            // dk (d × t) = q (d × t)·dS (t × t).
            self.gemm(
                (d, t, t),
                (&q, t, 1, dt),
                (&ds.dev().as_view(), t, 1, tt),
                &mut dqkv_b.slice_mut(ct..2 * ct),
                t,
                dt,
                0.0,
                heads,
            )?;
        }
        // dy (n, c, t) = in_wᵀ · dqkv: A(i, r) = in_w[r][i], r over the 3c rows.
        let mut dy = self.output(&y.shape)?;
        self.gemm(
            (c, t, 3 * c),
            (&p.in_w.dev().as_view(), 1, c, 0),
            (&dqkv.dev().as_view(), t, 1, 3 * ct),
            &mut dy.dev_mut().as_view_mut(),
            t,
            ct,
            0.0,
            n,
        )?;
        Ok(dy)
    }

    fn linear(
        &self,
        x: &CudaTensor,
        w: &CudaTensor,
        b: &CudaTensor,
        silu_input: bool,
    ) -> Result<CudaTensor> {
        let (n, fin, fout) = (x.shape[0], x.shape[1], b.shape[0]);
        let mut out = self.output(&[n, fout])?;
        let (ni, fi, fo, s) = (n as i32, fin as i32, fout as i32, silu_input as i32);
        let mut l = self.stream.launch_builder(self.f("linear"));
        l.arg(x.dev())
            .arg(w.dev())
            .arg(b.dev())
            .arg(out.dev_mut())
            .arg(&ni)
            .arg(&fi)
            .arg(&fo)
            .arg(&s);
        // One warp per output.
        self.run(l, grid1d(n * fout * 32))?;
        Ok(out)
    }

    fn add_channel_bias(&self, h: &mut CudaTensor, v: &CudaTensor) -> Result<()> {
        let (n, c, hh, ww) = dims4(h);
        let (nc, hw) = ((n * c) as i32, (hh * ww) as i32);
        let mut l = self.stream.launch_builder(self.f("add_channel_bias"));
        l.arg(h.dev_mut()).arg(v.dev()).arg(&nc).arg(&hw);
        self.run(l, grid1d(n * c * hh * ww))
    }

    fn add_assign(&self, a: &mut CudaTensor, b: &CudaTensor) -> Result<()> {
        let len = a.len();
        let li = len as i32;
        let mut l = self.stream.launch_builder(self.f("add_assign"));
        l.arg(a.dev_mut()).arg(b.dev()).arg(&li);
        self.run(l, grid1d(len))
    }

    fn upsample2x(&self, x: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        let mut y = self.output(&[n, c, 2 * h, 2 * w])?;
        let (p, hi, wi) = ((n * c) as i32, h as i32, w as i32);
        let mut l = self.stream.launch_builder(self.f("upsample2x"));
        l.arg(x.dev()).arg(y.dev_mut()).arg(&p).arg(&hi).arg(&wi);
        self.run(l, grid1d(4 * n * c * h * w))?;
        Ok(y)
    }

    fn upsample2x_vjp(&self, dy: &CudaTensor) -> Result<CudaTensor> {
        let (n, c, h2, w2) = dims4(dy);
        let (h, w) = (h2 / 2, w2 / 2);
        let mut dx = self.output(&[n, c, h, w])?;
        let (p, hi, wi) = ((n * c) as i32, h as i32, w as i32);
        let mut l = self.stream.launch_builder(self.f("upsample2x_vjp"));
        l.arg(dy.dev()).arg(dx.dev_mut()).arg(&p).arg(&hi).arg(&wi);
        self.run(l, grid1d(n * c * h * w))?;
        Ok(dx)
    }

    fn concat_channels(&self, a: &CudaTensor, b: &CudaTensor) -> Result<CudaTensor> {
        let (n, ca, h, w) = dims4(a);
        let cb = b.shape[1];
        let mut out = self.output(&[n, ca + cb, h, w])?;
        let (ni, la, lb) = (n as i32, (ca * h * w) as i32, (cb * h * w) as i32);
        let mut l = self.stream.launch_builder(self.f("concat_channels"));
        l.arg(a.dev())
            .arg(b.dev())
            .arg(out.dev_mut())
            .arg(&ni)
            .arg(&la)
            .arg(&lb);
        self.run(l, grid1d(n * (ca + cb) * h * w))?;
        Ok(out)
    }

    fn split_channels(&self, x: &CudaTensor, ca: usize) -> Result<(CudaTensor, CudaTensor)> {
        let (n, c, h, w) = dims4(x);
        let mut a = self.output(&[n, ca, h, w])?;
        let mut b = self.output(&[n, c - ca, h, w])?;
        let (ni, la, lb) = (n as i32, (ca * h * w) as i32, ((c - ca) * h * w) as i32);
        let mut l = self.stream.launch_builder(self.f("split_channels"));
        l.arg(x.dev())
            .arg(a.dev_mut())
            .arg(b.dev_mut())
            .arg(&ni)
            .arg(&la)
            .arg(&lb);
        self.run(l, grid1d(n * c * h * w))?;
        Ok((a, b))
    }

    fn blur(&self, x: &CudaTensor, kernel: &CudaTensor, adjoint: bool) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(x);
        let mut y = self.output(&x.shape)?;
        let (p, hi, wi, k, adj) = (
            (n * c) as i32,
            h as i32,
            w as i32,
            kernel.shape[0] as i32,
            adjoint as i32,
        );
        let mut l = self.stream.launch_builder(self.f("blur"));
        l.arg(x.dev())
            .arg(kernel.dev())
            .arg(y.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k)
            .arg(&adj);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        Ok(y)
    }

    fn tv_dual_update(
        &self,
        _px: &mut CudaTensor,
        _py: &mut CudaTensor,
        _xbar: &CudaTensor,
        _step: f32,
        _lam: f32,
    ) -> Result<()> {
        bail!("TODO(operators): TV kernels not wired yet")
    }

    fn tv_primal_update(
        &self,
        _x: &mut CudaTensor,
        _xbar: &mut CudaTensor,
        _atq: &CudaTensor,
        _px: &CudaTensor,
        _py: &CudaTensor,
        _step: f32,
    ) -> Result<()> {
        bail!("TODO(operators): TV kernels not wired yet")
    }

    fn lincomb(&self, a: &CudaTensor, ca: f32, b: &CudaTensor, cb: f32) -> Result<CudaTensor> {
        let mut out = self.output(&a.shape)?;
        let li = a.len() as i32;
        let mut l = self.stream.launch_builder(self.f("lincomb"));
        l.arg(a.dev())
            .arg(&ca)
            .arg(b.dev())
            .arg(&cb)
            .arg(out.dev_mut())
            .arg(&li);
        self.run(l, grid1d(a.len()))?;
        Ok(out)
    }

    fn predict_x0(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        sab: f32,
        s1m: f32,
    ) -> Result<CudaTensor> {
        let mut out = self.output(&x.shape)?;
        let li = x.len() as i32;
        let mut l = self.stream.launch_builder(self.f("predict_x0"));
        l.arg(x.dev())
            .arg(eps.dev())
            .arg(&sab)
            .arg(&s1m)
            .arg(out.dev_mut())
            .arg(&li);
        self.run(l, grid1d(x.len()))?;
        Ok(out)
    }

    fn clamp(&self, x: &mut CudaTensor, lo: f32, hi: f32) -> Result<()> {
        let len = x.len();
        let li = len as i32;
        let mut l = self.stream.launch_builder(self.f("clamp_inplace"));
        l.arg(x.dev_mut()).arg(&lo).arg(&hi).arg(&li);
        self.run(l, grid1d(len))
    }

    fn clamp_vjp(
        &self,
        reference: &CudaTensor,
        lo: f32,
        hi: f32,
        d: &mut CudaTensor,
    ) -> Result<()> {
        let len = d.len();
        let li = len as i32;
        let mut l = self.stream.launch_builder(self.f("clamp_vjp"));
        l.arg(reference.dev())
            .arg(&lo)
            .arg(&hi)
            .arg(d.dev_mut())
            .arg(&li);
        self.run(l, grid1d(len))
    }

    fn sum_sq_per_item(&self, x: &CudaTensor) -> Result<Vec<f64>> {
        let (n, per) = self.items(x)?;
        self.per_item_reduce(n, |out, cfg| {
            let mut l = self.stream.launch_builder(self.f("sum_sq_per_item"));
            l.arg(x.dev()).arg(out).arg(&per);
            self.run(l, cfg)
        })
    }

    fn dot_per_item(&self, a: &CudaTensor, b: &CudaTensor) -> Result<Vec<f64>> {
        let (n, per) = self.items(a)?;
        Self::same_len(a, b, "dot_per_item")?;
        self.per_item_reduce(n, |out, cfg| {
            let mut l = self.stream.launch_builder(self.f("dot_per_item"));
            l.arg(a.dev()).arg(b.dev()).arg(out).arg(&per);
            self.run(l, cfg)
        })
    }

    fn prox_cg(
        &self,
        ata: super::NormalOp<'_, CudaTensor>,
        aty: &CudaTensor,
        x0: &CudaTensor,
        mu: &[f32],
        max_iters: usize,
        tol: f64,
    ) -> Result<Option<(CudaTensor, Vec<super::CgSlice>)>> {
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
        let (n, _) = self.items(a)?;
        Self::same_len(a, b, "lincomb_per_item")?;
        if ca.len() < n || cb.len() < n {
            return Err(Error::internal(format!(
                "lincomb_per_item: {} and {} coefficients for {n} items",
                ca.len(),
                cb.len()
            )));
        }
        // The coefficients as one small device array: ca[0..n] then cb[0..n].
        let coef: Vec<f32> = ca[..n].iter().chain(&cb[..n]).copied().collect();
        let coef = self.upload(&Tensor::new(vec![2 * n], coef)?)?;
        self.lincomb_per_item_dev(a, b, &coef)
    }

    fn diffpir_prior(
        &self,
        x: &CudaTensor,
        eps: &CudaTensor,
        cur: (f32, f32),
        next: (f32, f32),
    ) -> Result<CudaTensor> {
        let mut xp = self.output(&x.shape)?;
        let li = x.len() as i32;
        let mut l = self.stream.launch_builder(self.f("diffpir_prior"));
        l.arg(x.dev())
            .arg(eps.dev())
            .arg(&cur.0)
            .arg(&cur.1)
            .arg(&next.0)
            .arg(&next.1)
            .arg(xp.dev_mut())
            .arg(&li);
        self.run(l, grid1d(x.len()))?;
        Ok(xp)
    }

    fn data_step(
        &self,
        xp: &CudaTensor,
        y: &CudaTensor,
        kernel: &CudaTensor,
        tau: f32,
    ) -> Result<CudaTensor> {
        let (n, c, h, w) = dims4(xp);
        let (p, hi, wi, k) = ((n * c) as i32, h as i32, w as i32, kernel.shape[0] as i32);
        let mut r = self.output(&xp.shape)?;
        let mut l = self.stream.launch_builder(self.f("blur_sub"));
        l.arg(xp.dev())
            .arg(kernel.dev())
            .arg(y.dev())
            .arg(r.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        let mut out = self.output(&xp.shape)?;
        let mut l = self.stream.launch_builder(self.f("blur_t_step"));
        l.arg(r.dev())
            .arg(kernel.dev())
            .arg(xp.dev())
            .arg(&tau)
            .arg(out.dev_mut())
            .arg(&p)
            .arg(&hi)
            .arg(&wi)
            .arg(&k);
        self.run(l, Self::blur_cfg(n * c, h, w))?;
        Ok(out)
    }
}
