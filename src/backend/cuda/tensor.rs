//! The device tensor and the backend's ways of making one (pooled outputs, scratch).

use super::pool::DevicePool;
use super::{cuda_err, CudaBackend};
use crate::error::Result;
use cudarc::driver::CudaSlice;
use std::sync::Arc;

/// A device tensor: NCHW f32, contiguous. Its buffer comes from the backend's pool and goes
/// back to it on drop; a clone copies into another pooled buffer.
pub struct CudaTensor {
    pub(super) shape: Vec<usize>,
    /// Some for the tensor's whole life; taken only by `drop`.
    pub(super) data: Option<CudaSlice<f32>>,
    pub(super) pool: Arc<DevicePool>,
}

impl CudaTensor {
    pub(super) fn dev(&self) -> &CudaSlice<f32> {
        self.data.as_ref().expect("a live tensor holds its buffer")
    }

    pub(super) fn dev_mut(&mut self) -> &mut CudaSlice<f32> {
        self.data.as_mut().expect("a live tensor holds its buffer")
    }

    /// Number of elements.
    pub(super) fn len(&self) -> usize {
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

impl CudaBackend {
    /// A pooled buffer of `shape` around `data` (which came from the active pool).
    pub(super) fn wrap(&self, shape: &[usize], data: CudaSlice<f32>) -> CudaTensor {
        CudaTensor {
            shape: shape.to_vec(),
            data: Some(data),
            pool: self.active_pool(),
        }
    }

    /// An output buffer from the pool, its contents unspecified (every kernel writes all of
    /// its output), or all NaN under `with_poison`.
    pub(super) fn output(&self, shape: &[usize]) -> Result<CudaTensor> {
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
    pub(super) fn scratch_f64(&self, n: usize) -> Result<CudaSlice<f64>> {
        let mut out = self.active_pool().take_f64(n).map_err(cuda_err)?;
        if self.poison {
            self.stream
                .memcpy_htod(&vec![f64::NAN; n], &mut out)
                .map_err(cuda_err)?;
        }
        Ok(out)
    }
}
