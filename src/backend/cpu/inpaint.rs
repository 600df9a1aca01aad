//! Inpainting's operator (shared/OPERATORS.md, `inpaint`): y = M ⊙ x with a fixed 0/1 mask of
//! the image's shape. The map is diagonal, so it is its own adjoint.

use rayon::prelude::*;

/// out = x ⊙ m for every slice of x; m has one slice's length (x holds a whole number of them).
pub fn mask(x: &[f32], m: &[f32], out: &mut [f32]) {
    assert!(!m.is_empty() && x.len().is_multiple_of(m.len()));
    assert_eq!(out.len(), x.len());
    out.par_chunks_mut(m.len())
        .zip(x.par_chunks(m.len()))
        .for_each(|(o, img)| {
            for ((o, &v), &keep) in o.iter_mut().zip(img).zip(m) {
                *o = v * keep;
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    #[test]
    fn masks_each_slice_and_is_self_adjoint() {
        let mut rng = Rng::new(5);
        let (hw, n) = (7 * 5, 3);
        let m: Vec<f32> = (0..hw)
            .map(|_| (rng.uniform() < 0.4) as u8 as f32)
            .collect();
        let (x, y) = (rng.normal_vec(n * hw), rng.normal_vec(n * hw));
        let (mut mx, mut my) = (vec![f32::NAN; x.len()], vec![f32::NAN; y.len()]);
        mask(&x, &m, &mut mx);
        mask(&y, &m, &mut my);
        for (i, &v) in mx.iter().enumerate() {
            assert_eq!(v, if m[i % hw] != 0.0 { x[i] } else { 0.0 * x[i] });
        }
        let dot = |a: &[f32], b: &[f32]| -> f64 {
            a.iter().zip(b).map(|(p, q)| *p as f64 * *q as f64).sum()
        };
        let (lhs, rhs) = (dot(&mx, &y), dot(&x, &my));
        println!("inpaint dot test: {lhs} vs {rhs}");
        assert_eq!(lhs, rhs); // the same products, summed in the same order
    }
}
