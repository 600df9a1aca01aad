//! The device tensor and the backend's ways of making one (pooled outputs, scratch).

use super::checks::numel;
use super::pool::DevicePool;
use super::{cuda_err, CudaBackend};
use crate::error::{Error, Result};
use cudarc::driver::CudaSlice;
use std::sync::Arc;

/// A device tensor: NCHW f32, contiguous. Its buffer comes from the backend's pool and goes
/// back to it on drop; `try_clone` copies it into another pooled buffer.
pub struct CudaTensor {
    pub(super) shape: Vec<usize>,
    /// Some for the tensor's whole life, except in a clone whose copy failed (see `Clone`);
    /// taken by `drop`.
    data: Option<CudaSlice<f32>>,
    pool: Arc<DevicePool>,
    /// Why this tensor holds no buffer: the error of the copy `Clone` could not make.
    failed: Option<Error>,
}

impl CudaTensor {
    /// The device buffer, or the error that left this tensor without one.
    pub(super) fn dev(&self) -> Result<&CudaSlice<f32>> {
        match &self.data {
            Some(d) => Ok(d),
            None => Err(self.missing()),
        }
    }

    pub(super) fn dev_mut(&mut self) -> Result<&mut CudaSlice<f32>> {
        match self.data {
            Some(ref mut d) => Ok(d),
            None => Err(self.failed.clone().unwrap_or_else(Self::no_buffer)),
        }
    }

    fn missing(&self) -> Error {
        self.failed.clone().unwrap_or_else(Self::no_buffer)
    }

    fn no_buffer() -> Error {
        Error::internal("a CUDA tensor without its buffer")
    }

    /// Number of elements (the shape's product: it sized the buffer).
    pub(super) fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// A device-to-device copy into a pooled buffer (of the pool this tensor came from).
    pub fn try_clone(&self) -> Result<CudaTensor> {
        let src = self.dev()?;
        let mut data = self.pool.take_f32(src.len()).map_err(cuda_err)?;
        if let Err(e) = self.pool.stream.memcpy_dtod(src, &mut data) {
            self.pool.give_f32(data);
            return Err(cuda_err(e));
        }
        Ok(CudaTensor {
            shape: self.shape.clone(),
            data: Some(data),
            pool: self.pool.clone(),
            failed: None,
        })
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
    /// `Backend::Buf` must be `Clone` (generic code such as the UNet's skip connections clones
    /// buffers) and `Clone` cannot fail. So when the copy fails (the device is full even after
    /// the pool released its free buffers, or the driver failed), the clone holds no buffer
    /// but the error, and every op that reads or writes it returns that error: no panic, and
    /// no silent result. This backend's own code calls `try_clone`.
    fn clone(&self) -> Self {
        self.try_clone().unwrap_or_else(|e| CudaTensor {
            shape: self.shape.clone(),
            data: None,
            pool: self.pool.clone(),
            failed: Some(e.context("copying a CUDA tensor")),
        })
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
            failed: None,
        }
    }

    /// An output buffer from the pool, its contents unspecified (every kernel writes all of
    /// its output), or all NaN under `with_poison`.
    pub(super) fn output(&self, shape: &[usize]) -> Result<CudaTensor> {
        let n = numel(shape)
            .ok_or_else(|| Error::input(format!("a tensor of shape {shape:?} is too large")))?;
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
