//! The one set of size limits of the command line, derived from a memory budget.
//!
//! Every command that computes takes `--max-memory` (bytes, or a number with K, M, G or T:
//! powers of 1024; default: half of the machine's memory, MemTotal in /proc/meminfo, or 8 GiB
//! where that cannot be read). Before it allocates anything sized by the user (counts, sizes,
//! slices × samples, batches) a command estimates its peak with `Cost` and refuses with exit 2,
//! naming the limit, when the estimate exceeds the budget. All the arithmetic is checked: a
//! product that overflows is a refusal, never a wrapped size.
//!
//! The estimate, conservative (about 1.3 times what was measured, see `TAPE_MAPS`):
//! - A UNet's feature maps: `F = Σ_l c_l · (H/2^l)·(W/2^l)` floats per image (c_l the
//!   channels of level l). A forward keeps the skips and a res block's working buffers
//!   (`FORWARD_MAPS`·F); the DPS samplers also keep the tape for the input-VJP and the VJP's
//!   own buffers (`TAPE_MAPS`·F).
//! - The model itself: its parameters twice (the host copy and the backend's), and one
//!   image's attention scores (heads·T² at the finest attention level: the CUDA backend's
//!   largest per-image attention buffer; the CPU computes them in smaller blocks).
//! - The classical baselines and the operator commands: a fixed number of image- and
//!   measurement-sized buffers per slice (`SOLVER_BUFFERS`).
//! - A constant `RUNTIME` for the process itself.
//!
//! On a GPU the model's buffers live in device memory; the same estimate (measured on the CPU,
//! not yet on a GPU) bounds the run there, and a device that runs out anyway is an error.

use crate::bail;
use crate::error::Result;
use crate::unet::UNetConfig;
use clap::Args;

/// `--max-memory`, flattened into every command that computes.
#[derive(Args, Debug, Clone, Default)]
pub struct MemoryArgs {
    /// The most memory a run may plan to use: bytes, or a number with K, M, G or T (powers
    /// of 1024), e.g. 8G [default: half of the machine's memory (MemTotal in /proc/meminfo;
    /// 8G where it cannot be read)]. A run whose estimated peak exceeds it is refused before
    /// it allocates (exit 2).
    #[arg(long, value_parser = parse_bytes)]
    pub max_memory: Option<u64>,
}

/// The default budget's share of the machine's memory.
const DEFAULT_SHARE: u64 = 2;
/// The default budget where /proc/meminfo cannot be read.
const FALLBACK_MEMORY: u64 = 8 << 30;
/// The process itself (binary, thread stacks, allocator slack).
const RUNTIME: u64 = 64 << 20;
// The feature maps alive at a peak, in units of F, measured with /usr/bin/time's maximum RSS on
// the CPU (the bundled prior, 64×64 images, batches 1 and 9 or 16; the slope per image, less
// SOLVER_BUFFERS): DDIM 6.9 F, DiffPIR-style 5.7 F, published DiffPIR 6.6 F, DPS 20.1 F,
// published DPS 20.7 F. The constants are about 1.3 times the largest of each kind. Check at
// batch 33: DPS peaked at 301 MiB, estimated 454 MiB; DiffPIR-style at batch 9: 40 MiB, 107 MiB.
/// A forward's peak: the skips and a res block's working buffers.
const FORWARD_MAPS: u64 = 9;
/// A DPS step's peak: the tape for the input-VJP and the VJP's own buffers.
const TAPE_MAPS: u64 = 27;
/// Image- or measurement-sized buffers per slice of a sampler's own state, a baseline
/// (CG, primal-dual) or an operator command.
const SOLVER_BUFFERS: u64 = 24;

/// A memory budget and where it came from (for the messages).
#[derive(Debug, Clone)]
pub struct Budget {
    pub bytes: u64,
    source: String,
}

impl MemoryArgs {
    pub fn budget(&self) -> Budget {
        match self.max_memory {
            Some(bytes) => Budget {
                bytes,
                source: "--max-memory".into(),
            },
            None => match machine_memory() {
                Some(total) => Budget {
                    bytes: total / DEFAULT_SHARE,
                    source: format!(
                        "the default --max-memory, half of this machine's {}",
                        show(total)
                    ),
                },
                None => Budget {
                    bytes: FALLBACK_MEMORY,
                    source: "the default --max-memory (this machine's memory is unknown)".into(),
                },
            },
        }
    }
}

impl Budget {
    /// Refuses `what` when `need` (None: a size that overflowed) exceeds the budget; `fix`
    /// says what to change.
    pub fn check(&self, what: &str, need: Option<u64>, fix: &str) -> Result<()> {
        match need {
            Some(n) if n <= self.bytes => Ok(()),
            Some(n) => bail!(
                "{what} needs about {} of memory, more than the limit of {} ({}): {fix}, or raise --max-memory",
                show(n),
                show(self.bytes),
                self.source
            ),
            None => bail!(
                "{what} is too large to size (its memory overflows 64 bits; the limit is {}, {}): {fix}",
                show(self.bytes),
                self.source
            ),
        }
    }

    /// How many items of `per_item` bytes fit beside `fixed` bytes (for the messages).
    pub fn items_that_fit(&self, fixed: Option<u64>, per_item: Option<u64>) -> u64 {
        match (fixed, per_item) {
            (Some(f), Some(p)) if p > 0 => self.bytes.saturating_sub(f) / p,
            _ => 0,
        }
    }
}

/// What one image costs, by the kind of work done on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// UNet forwards only: eps, DDIM, DiffPIR (both versions).
    Forward,
    /// Forwards with the tape and the input-VJP: DPS (both versions), dps-grad.
    Gradient,
}

/// The peak of a run: `fixed` bytes plus `per_item` bytes for each of `items`.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub fixed: Option<u64>,
    pub per_item: Option<u64>,
}

impl Cost {
    /// The model's work on images of (h, w) from measurements of (rows, cols) (the sampler's
    /// own state: `SOLVER_BUFFERS` of each per image).
    pub fn model(
        cfg: &UNetConfig,
        image: (usize, usize),
        measurement: (usize, usize),
        work: Work,
    ) -> Cost {
        let maps = match work {
            Work::Forward => FORWARD_MAPS,
            Work::Gradient => TAPE_MAPS,
        };
        let state = Cost::solver(image, measurement).per_item;
        let per_item = feature_floats(cfg, image)
            .and_then(|f| f.checked_mul(maps * 4))
            .zip(state)
            .and_then(|(a, b)| a.checked_add(b));
        Cost {
            fixed: model_bytes(cfg, image),
            per_item,
        }
    }

    /// Buffers of images of (h, w) and measurements of (rows, cols), `SOLVER_BUFFERS` of each
    /// per slice (the baselines, the operator commands).
    pub fn solver(image: (usize, usize), measurement: (usize, usize)) -> Cost {
        let floats = (image.0 as u64)
            .checked_mul(image.1 as u64)
            .zip((measurement.0 as u64).checked_mul(measurement.1 as u64))
            .and_then(|(a, b)| a.checked_add(b));
        Cost {
            fixed: Some(RUNTIME),
            per_item: floats.and_then(|f| f.checked_mul(SOLVER_BUFFERS * 4)),
        }
    }

    /// `bytes` per item and nothing else but the runtime (phantoms: the stack and its file).
    pub fn plain(bytes_per_item: Option<u64>) -> Cost {
        Cost {
            fixed: Some(RUNTIME),
            per_item: bytes_per_item,
        }
    }

    /// The peak for `items` items (None on overflow).
    pub fn total(&self, items: u64) -> Option<u64> {
        self.per_item?.checked_mul(items)?.checked_add(self.fixed?)
    }

    /// This cost and another run one after the other: the larger of each part.
    pub fn max(self, other: Cost) -> Cost {
        let pick = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| a.max(b));
        Cost {
            fixed: pick(self.fixed, other.fixed),
            per_item: pick(self.per_item, other.per_item),
        }
    }
}

impl Budget {
    /// Refuses `items` items of `cost`, saying how many would fit.
    pub fn check_items(&self, what: &str, items: u64, cost: &Cost, fix: &str) -> Result<()> {
        let fits = match self.items_that_fit(cost.fixed, cost.per_item) {
            0 => "not even one fits".to_string(),
            n => format!("at most {n} fit"),
        };
        self.check(what, cost.total(items), &format!("{fits}; {fix}"))
    }
}

/// F: the floats of one feature map per level for one (h, w) image (None on overflow).
fn feature_floats(cfg: &UNetConfig, (h, w): (usize, usize)) -> Option<u64> {
    (0..cfg.levels()).try_fold(0u64, |acc, l| {
        let c = (cfg.base_ch as u64).checked_mul(*cfg.channel_mults.get(l)? as u64)?;
        let plane = ((h >> l) as u64).checked_mul((w >> l) as u64)?;
        acc.checked_add(c.checked_mul(plane)?)
    })
}

/// The runtime, the parameters twice, and one image's attention scores (heads · T²).
fn model_bytes(cfg: &UNetConfig, (h, w): (usize, usize)) -> Option<u64> {
    let params = (cfg.param_count() as u64).checked_mul(2 * 4)?;
    // The finest level with attention; the middle block attends at the coarsest level.
    let finest = cfg
        .attn_levels
        .iter()
        .copied()
        .min()
        .unwrap_or(cfg.levels() - 1)
        .min(cfg.levels() - 1);
    let tokens = ((h >> finest) as u64).checked_mul((w >> finest) as u64)?;
    let scores = tokens
        .checked_mul(tokens)?
        .checked_mul(cfg.num_heads as u64)?
        .checked_mul(4)?;
    RUNTIME.checked_add(params)?.checked_add(scores)
}

/// `--max-memory`'s parser: bytes, or a number with K, M, G or T (powers of 1024).
pub fn parse_bytes(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], t[i..].to_ascii_uppercase()),
        None => (t, String::new()),
    };
    let shift = match unit.as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        _ => {
            return Err(format!(
                "'{s}': use bytes or a number with K, M, G or T, e.g. 8G"
            ))
        }
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}': use bytes or a number with K, M, G or T, e.g. 8G"))?;
    let bytes = v * (1u64 << shift) as f64;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(format!("'{s}' is not a positive memory size below 16 EiB"));
    }
    Ok(bytes as u64)
}

/// MemTotal of /proc/meminfo in bytes.
fn machine_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Bytes for people: 1.5 GiB, 820 MiB.
pub fn show(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_bytes("8G"), Ok(8 << 30));
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("2T"), Ok(2 << 40));
        for bad in ["", "0", "-1G", "8X", "G", "nan", "1e30T", "inf"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn overflowing_sizes_are_refusals_not_wraps() {
        let cfg = UNetConfig::notebook();
        let c = Cost::model(&cfg, (1 << 40, 1 << 40), (1, 1), Work::Gradient);
        assert!(c.total(1).is_none());
        let c = Cost::model(&cfg, (64, 64), (64, 64), Work::Gradient);
        assert!(c.total(u64::MAX / 2).is_none());
        let b = Budget {
            bytes: 1 << 30,
            source: "test".into(),
        };
        let e = b.check_items("x", 1 << 62, &c, "fewer").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("too large"), "{e}");
    }

    #[test]
    fn the_notebook_model_at_64_costs_megabytes_per_image() {
        // F = 64·4096 + 128·1024 + 256·256 floats.
        let cfg = UNetConfig::notebook();
        assert_eq!(feature_floats(&cfg, (64, 64)), Some(458_752));
        let dps = Cost::model(&cfg, (64, 64), (64, 64), Work::Gradient);
        let per = dps.per_item.unwrap();
        assert_eq!(per, 458_752 * TAPE_MAPS * 4 + 2 * 4096 * SOLVER_BUFFERS * 4);
        // 4096 DPS images of 64×64 do not fit in 16 GiB; 256 do.
        let b = Budget {
            bytes: 16 << 30,
            source: "test".into(),
        };
        assert!(b.check_items("x", 4096, &dps, "fewer").is_err());
        assert!(b.check_items("x", 256, &dps, "fewer").is_ok());
    }
}
