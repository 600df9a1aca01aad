//! The generator's checks: determinism and pinned bits, value grid, plausible anatomy.

use super::scene::Scene;
use super::shapes::Class;
use super::*;

fn fnv(img: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &v in img {
        let level = (v * 255.0).round() as u8;
        h ^= level as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[test]
fn deterministic_and_pinned() {
    let a = phantom(1, 64);
    let b = phantom(1, 64);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let levels: u64 = a.iter().map(|&v| (v * 255.0).round() as u64).sum();
    let hash = fnv(&a);
    eprintln!("phantom(1, 64): level sum {levels}, fnv {hash:#018x}");
    assert_eq!((levels, hash), (PINNED_LEVEL_SUM, PINNED_FNV));
}

const PINNED_LEVEL_SUM: u64 = 62127;
const PINNED_FNV: u64 = 0x93a7_80a7_f287_7ecc;

/// FNV-1a over the f32 bit patterns of `phantoms(12, seed, size)`, for each (seed, size).
fn bit_hashes() -> Vec<(u64, usize, u64)> {
    let mut out = Vec::new();
    for seed in [1, 7, 42, 1_000_003] {
        for size in [16, 33, 64, 128] {
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            for v in phantoms(12, seed, size).data() {
                for byte in v.to_bits().to_le_bytes() {
                    h ^= byte as u64;
                    h = h.wrapping_mul(0x0100_0000_01b3);
                }
            }
            out.push((seed, size, h));
        }
    }
    out
}

/// The generator's output, pinned bit for bit on 48 slices at four sizes. Their seeds
/// draw every region (thorax 13, upper abdomen 18, lower abdomen 6, pelvis 8 + low
/// pelvis 3: counted by instrumenting `Scene::generate` once), so a change to any region's
/// code or to the shared shapes, texture or rendering shows here.
#[test]
fn pinned_bits_over_every_region() {
    let got = bit_hashes();
    for g in &got {
        eprintln!("{g:?}");
    }
    assert_eq!(got, PINNED_BIT_HASHES);
}

const PINNED_BIT_HASHES: &[(u64, usize, u64)] = &[
    (1, 16, 0xae81_611c_91b1_1a4f),
    (1, 33, 0x9c88_f2cf_7e0a_2dd1),
    (1, 64, 0x29d8_7ce2_2430_523a),
    (1, 128, 0xd518_64e4_37ba_fdaa),
    (7, 16, 0x5fc3_11b1_7cf3_c71d),
    (7, 33, 0xfcbc_73b4_d4cc_26f1),
    (7, 64, 0x3b90_7bab_71fe_c5af),
    (7, 128, 0xa621_62ca_4c8c_6c0e),
    (42, 16, 0x49b3_cee8_8533_d6bf),
    (42, 33, 0xc7d0_ff64_f20f_ee44),
    (42, 64, 0xc630_0f0c_8c5e_70a7),
    (42, 128, 0x5f40_d49a_eae8_7fcf),
    (1_000_003, 16, 0x427c_47a6_354a_3ab7),
    (1_000_003, 33, 0x8b7c_bc6d_2b86_6385),
    (1_000_003, 64, 0x28d9_ffd5_306e_4136),
    (1_000_003, 128, 0x8401_dc23_4237_9017),
];

#[test]
fn different_seeds_differ() {
    let a = phantom(1, 64);
    for s in 2..10 {
        assert_ne!(a, phantom(s, 64), "seed {s}");
    }
}

#[test]
fn values_on_the_8bit_grid() {
    for seed in 0..50 {
        for size in [16, 33, 64] {
            let img = phantom(seed, size);
            assert_eq!(img.len(), size * size);
            for &v in &img {
                assert!((0.0..=1.0).contains(&v), "value {v}");
                let k = v * 255.0;
                assert!((k - k.round()).abs() < 1e-4, "off-grid {v}");
                assert_eq!(v, k.round() / 255.0);
            }
        }
    }
}

#[test]
fn body_covers_a_plausible_fraction() {
    for seed in 0..200 {
        let img = phantom(seed, 64);
        let frac = img.iter().filter(|&&v| v > 0.04).count() as f64 / img.len() as f64;
        assert!(
            (0.12..0.85).contains(&frac),
            "seed {seed}: body fraction {frac}"
        );
        // Corners are air.
        assert_eq!(img[0], 0.0, "seed {seed}");
    }
}

#[test]
fn bone_is_the_brightest_class() {
    let size = 64;
    let mut with_bone = 0;
    for seed in 0..200 {
        let scene = Scene::generate(seed);
        let mut img = vec![0.0; size * size];
        scene.render(size, &mut img);
        let mut sums: Vec<(Class, f64, usize, f32)> = Vec::new();
        for py in 0..size {
            for px in 0..size {
                let x = (px as f32 + 0.5) / size as f32 * 2.0 - 1.0;
                let y = (py as f32 + 0.5) / size as f32 * 2.0 - 1.0;
                let c = scene.class_at(x, y);
                let v = img[py * size + px];
                match sums.iter_mut().find(|e| e.0 == c) {
                    Some(e) => {
                        e.1 += v as f64;
                        e.2 += 1;
                        e.3 = e.3.max(v);
                    }
                    None => sums.push((c, v as f64, 1, v)),
                }
            }
        }
        let Some(bone) = sums.iter().find(|e| e.0 == Class::Bone) else {
            continue;
        };
        with_bone += 1;
        let bone_mean = bone.1 / bone.2 as f64;
        assert!(
            bone.3 >= img.iter().cloned().fold(0.0, f32::max),
            "seed {seed}"
        );
        for e in &sums {
            if e.0 != Class::Bone {
                let m = e.1 / e.2 as f64;
                assert!(
                    bone_mean > m,
                    "seed {seed}: bone {bone_mean} vs {:?} {m}",
                    e.0
                );
            }
        }
    }
    assert!(with_bone >= 190, "only {with_bone} slices show bone");
}

#[test]
fn phantoms_match_phantom_in_model_space() {
    let t = phantoms(5, 42, 32);
    assert_eq!(t.shape(), &[5, 1, 32, 32]);
    for i in 0..5 {
        let p = phantom(slice_seed(42, i), 32);
        let x = &t.data()[i * 1024..(i + 1) * 1024];
        for (a, b) in p.iter().zip(x) {
            assert_eq!(2.0 * a - 1.0, *b);
        }
    }
    assert_eq!(t, phantoms(5, 42, 32));
    assert_ne!(t.data()[..1024], phantoms(5, 43, 32).data()[..1024]);
    assert_eq!(phantoms(0, 1, 32).shape(), &[0, 1, 32, 32]);
}

#[test]
fn sizes() {
    assert!(check_size(16).is_ok());
    assert!(check_size(15).is_err());
    assert!(check_size(MAX_SIZE + 1).is_err());
    for size in [1, 2, 7, 16, 100, 128] {
        let img = phantom(3, size);
        assert_eq!(img.len(), size * size);
    }
}
