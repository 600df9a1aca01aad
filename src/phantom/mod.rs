//! Synthetic CT-like axial slices: the training and evaluation images of the engine's own prior
//! (the real CT data of the reference setup is not available).
//!
//! Each slice is a random scene of analytic shapes painted in order (later shapes cover earlier
//! ones), in Hounsfield-like units: air, a patient table, a body outline with a subcutaneous fat
//! layer and a muscle wall, and, by body region (thorax, upper abdomen, lower abdomen, pelvis),
//! lungs, heart, liver, spleen, kidneys, stomach, bowel loops with gas or fluid, bladder,
//! vessels, lesions and bone (vertebra with spinal canal, ribs as ring segments along the wall,
//! sternum, scapulae, iliac wings, sacrum, femoral heads). Shapes are ellipses whose radius is
//! perturbed by a few angular harmonics, optionally cut to a ring, an angular window, a half
//! plane, or the inside of another shape. A smooth low-frequency texture is added to tissue.
//!
//! The scene is rendered on a 4×4 supersampled grid, windowed (level/width, as a viewer does)
//! per sample, box-averaged to the output grid and quantised to 8-bit levels k/255, which is
//! what a CT slice exported to an 8-bit image and resized looks like.
//!
//! Everything is a pure function of the seed: the same seed gives bitwise the same slice.
//! Geometry is expressed in normalised image coordinates ([-1, 1] across the image), so any size
//! renders the same anatomy; sizes below 16 work but carry little detail.

mod anatomy;
mod organs;
mod scene;
mod shapes;
#[cfg(test)]
mod tests;

use crate::bail;
use crate::error::Result;
use crate::rng::{mix64, GOLDEN_GAMMA};
use crate::tensor::Tensor;
use rayon::prelude::*;
use scene::Scene;

/// Smallest and largest sizes accepted by [`check_size`].
pub const MIN_SIZE: usize = 16;
pub const MAX_SIZE: usize = 1024;

/// Validate a requested slice size for callers that take it from the user.
pub fn check_size(size: usize) -> Result<()> {
    if !(MIN_SIZE..=MAX_SIZE).contains(&size) {
        bail!("phantom size {size} is out of range; use {MIN_SIZE} to {MAX_SIZE} pixels");
    }
    Ok(())
}

/// The seed of slice `index` in a set generated from `seed`.
pub fn slice_seed(seed: u64, index: usize) -> u64 {
    mix64(seed ^ mix64((index as u64).wrapping_add(1).wrapping_mul(GOLDEN_GAMMA)))
}

/// One size×size slice, row-major, pixel values in [0, 1] on the 8-bit grid k/255.
pub fn phantom(seed: u64, size: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; size * size];
    let scene = Scene::generate(seed);
    scene.render(size, &mut out);
    out
}

/// `count` slices as a (count, 1, size, size) tensor in model space (x = 2p − 1). Slice i is
/// `phantom(slice_seed(seed, i), size)`; slices are rendered in parallel, deterministically.
pub fn phantoms(count: usize, seed: u64, size: usize) -> Tensor {
    let plane = size * size;
    let mut data = vec![0.0f32; count * plane];
    if plane > 0 {
        data.par_chunks_mut(plane).enumerate().for_each(|(i, dst)| {
            Scene::generate(slice_seed(seed, i)).render(size, dst);
            for v in dst.iter_mut() {
                *v = 2.0 * *v - 1.0;
            }
        });
    }
    Tensor::new(vec![count, 1, size, size], data).expect("shape matches data")
}
