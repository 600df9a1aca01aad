//! The UNet's hyper-parameters, the exact parameter table they imply (names of the notebook
//! library's state dict, shapes), and the inference of a config from a weights file.

use crate::bail;
use crate::error::Result;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UNetConfig {
    pub in_ch: usize,
    pub base_ch: usize,
    pub channel_mults: Vec<usize>,
    pub time_dim: usize,
    pub attn_levels: Vec<usize>,
    pub num_heads: usize,
}

/// name → shape, in a stable order.
pub type ParamTable = BTreeMap<String, Vec<usize>>;

// Limits on what a config (usually read from a weights file) may ask for, checked by `validate`
// before anything is allocated. They are far above any model this engine is meant for (the
// notebook's: 3 levels, 256 channels, time_dim 256, 12.4M parameters) and keep every size
// product, and the image-size multiple 2^(levels-1), well inside a usize.

/// Levels (channel multipliers); inputs must be multiples of 2^(MAX_LEVELS-1) = 2048 at most.
pub const MAX_LEVELS: usize = 12;
/// Channels of any level (base_ch × multiplier).
pub const MAX_CHANNELS: usize = 8192;
/// Width of the time embedding (the time MLP's hidden layer is 4× this).
pub const MAX_TIME_DIM: usize = 8192;
/// Image channels of the input and output.
pub const MAX_IN_CH: usize = 64;
/// Parameters in all (2^30, 4 GiB of float32).
pub const MAX_PARAMS: usize = 1 << 30;

/// GroupNorm's group count: the largest divisor of `c` that is at most 32 (the notebook's rule).
pub fn groups_for(c: usize) -> usize {
    (1..=c.min(32))
        .rev()
        .find(|&d| c.is_multiple_of(d))
        .unwrap_or(1)
}

/// The product of one shape's dimensions, None on overflow.
pub fn checked_elements(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

fn checked_param_count(table: &ParamTable) -> Option<usize> {
    table
        .values()
        .try_fold(0usize, |acc, s| acc.checked_add(checked_elements(s)?))
}

impl UNetConfig {
    /// The notebook's model: 12,356,161 parameters in 198 tensors.
    pub fn notebook() -> Self {
        UNetConfig {
            in_ch: 1,
            base_ch: 64,
            channel_mults: vec![1, 2, 4],
            time_dim: 256,
            attn_levels: vec![1, 2],
            num_heads: 4,
        }
    }

    pub fn levels(&self) -> usize {
        self.channel_mults.len()
    }

    /// Channels at `level`; the config must have passed `validate`.
    pub fn channels(&self, level: usize) -> usize {
        self.base_ch * self.channel_mults[level]
    }

    pub fn has_attention(&self, level: usize) -> bool {
        self.attn_levels.contains(&level)
    }

    /// Spatial sizes must survive every downsampling exactly; the config must have passed
    /// `validate` (which bounds the level count by MAX_LEVELS).
    pub fn size_multiple(&self) -> usize {
        1 << (self.levels() - 1)
    }

    /// True when every GroupNorm that follows the per-channel time bias (each ResBlock's norm2,
    /// on the level's channels) has one channel per group: its mean subtraction then removes
    /// the bias exactly, so the network's output does not depend on the timestep.
    pub fn time_embedding_vanishes(&self) -> bool {
        (0..self.levels()).all(|l| {
            let c = self.channels(l);
            groups_for(c) == c
        })
    }

    /// Checks, before anything is sized from it, that the config describes a network the
    /// notebook's UNet can build and the engine can hold (the limits above).
    pub fn validate(&self) -> Result<()> {
        if self.in_ch == 0 || self.base_ch == 0 || self.time_dim == 0 {
            bail!("model config has a zero size: {self:?}");
        }
        if self.channel_mults.is_empty() || self.channel_mults.contains(&0) {
            bail!(
                "model config needs at least one level and positive channel multipliers: {self:?}"
            );
        }
        if self.levels() > MAX_LEVELS {
            bail!(
                "model has {} levels; at most {MAX_LEVELS} are supported (each level halves the image)",
                self.levels()
            );
        }
        if self.channel_mults[0] != 1 {
            bail!(
                "channel multiplier of level 0 is {}, not 1: the notebook's UNet ends with \
                 out_norm/out_conv on base_ch channels, which must equal level 0's base_ch·mult",
                self.channel_mults[0]
            );
        }
        if self.in_ch > MAX_IN_CH {
            bail!(
                "model has {} input channels; at most {MAX_IN_CH} are supported",
                self.in_ch
            );
        }
        if self.time_dim > MAX_TIME_DIM {
            bail!(
                "time_dim {} exceeds the supported maximum {MAX_TIME_DIM}",
                self.time_dim
            );
        }
        for (l, &m) in self.channel_mults.iter().enumerate() {
            match self.base_ch.checked_mul(m) {
                Some(c) if c <= MAX_CHANNELS => {}
                _ => bail!(
                    "level {l} has base_ch {} × multiplier {m} channels; at most {MAX_CHANNELS} are supported",
                    self.base_ch
                ),
            }
        }
        if let Some(l) = self.attn_levels.iter().find(|&&l| l >= self.levels()) {
            bail!(
                "attention level {l} does not exist in a {}-level model",
                self.levels()
            );
        }
        if self.num_heads == 0 {
            bail!("num_heads must be positive");
        }
        let mut attn_channels: Vec<usize> =
            self.attn_levels.iter().map(|&l| self.channels(l)).collect();
        attn_channels.push(self.channels(self.levels() - 1)); // the middle attention
        if let Some(c) = attn_channels.iter().find(|&&c| c % self.num_heads != 0) {
            bail!(
                "num_heads {} does not divide the attention width {c}; pass --num-heads with a divisor of {c}",
                self.num_heads
            );
        }
        // Within the caps above every shape product fits a usize; the total is still checked.
        match checked_param_count(&self.param_table()) {
            Some(n) if n <= MAX_PARAMS => Ok(()),
            n => bail!(
                "model has {} parameters; at most {MAX_PARAMS} (4 GiB of float32) are supported",
                n.map_or("more than 2^64".to_string(), |n| n.to_string())
            ),
        }
    }

    /// Every parameter tensor the model has, with its shape; the config must have passed
    /// `validate` (whose caps keep these sizes from overflowing).
    pub fn param_table(&self) -> ParamTable {
        let mut t = ParamTable::new();
        let d = self.time_dim;
        conv(&mut t, "init", self.base_ch, self.in_ch, 3);
        linear(&mut t, "time_mlp.0", 4 * d, d);
        linear(&mut t, "time_mlp.2", d, 4 * d);
        let mut c_prev = self.base_ch;
        for l in 0..self.levels() {
            let c = self.channels(l);
            resblock(&mut t, &format!("down_blocks.{l}.0"), c_prev, c, d);
            resblock(&mut t, &format!("down_blocks.{l}.1"), c, c, d);
            if self.has_attention(l) {
                attention(&mut t, &format!("down_blocks.{l}.2"), c);
            }
            if l + 1 < self.levels() {
                conv(&mut t, &format!("downsamples.{l}.conv"), c, c, 3);
            }
            c_prev = c;
        }
        resblock(&mut t, "mid_block1", c_prev, c_prev, d);
        attention(&mut t, "mid_attn", c_prev);
        resblock(&mut t, "mid_block2", c_prev, c_prev, d);
        for j in 0..self.levels() {
            let l = self.levels() - 1 - j;
            let c = self.channels(l);
            if j > 0 {
                conv(&mut t, &upsample_name(j), c_prev, c_prev, 3);
            }
            resblock(&mut t, &format!("up_blocks.{j}.0"), c_prev + c, c, d);
            resblock(&mut t, &format!("up_blocks.{j}.1"), c, c, d);
            if self.has_attention(l) {
                attention(&mut t, &format!("up_blocks.{j}.2"), c);
            }
            c_prev = c;
        }
        norm(&mut t, "out_norm", self.base_ch);
        conv(&mut t, "out_conv", self.in_ch, self.base_ch, 3);
        t
    }

    /// The number of parameters; the config must have passed `validate`.
    pub fn param_count(&self) -> usize {
        checked_param_count(&self.param_table()).expect("validate bounds the parameter count")
    }

    /// The config implied by a file's tensor shapes (num_heads comes from elsewhere).
    pub fn infer(shapes: &ParamTable, num_heads: usize) -> Result<Self> {
        let get = |name: &str| -> Result<&Vec<usize>> {
            match shapes.get(name) {
                Some(s) => Ok(s),
                None => bail!(
                    "weights file has no tensor '{name}'; is this a DiffusionUNet state dict?"
                ),
            }
        };
        let init = get("init.weight")?;
        let mlp0 = get("time_mlp.0.weight")?;
        if init.len() != 4 || mlp0.len() != 2 {
            bail!("tensor 'init.weight' or 'time_mlp.0.weight' has the wrong rank ({init:?}, {mlp0:?})");
        }
        let (base_ch, in_ch, time_dim) = (init[0], init[1], mlp0[1]);
        if base_ch == 0 || in_ch == 0 || time_dim == 0 {
            bail!("tensor 'init.weight' {init:?} or 'time_mlp.0.weight' {mlp0:?} has a zero size");
        }
        let mut channel_mults = Vec::new();
        let mut attn_levels = Vec::new();
        while let Some(s) = shapes.get(&format!(
            "down_blocks.{}.1.conv1.weight",
            channel_mults.len()
        )) {
            let l = channel_mults.len();
            if l == MAX_LEVELS {
                bail!("weights file has more than {MAX_LEVELS} levels (down_blocks.0 .. down_blocks.{l} and on); at most {MAX_LEVELS} are supported");
            }
            if s.is_empty() || s[0] % base_ch != 0 {
                bail!("tensor 'down_blocks.{l}.1.conv1.weight' has {s:?} channels, not a multiple of base_ch {base_ch}");
            }
            channel_mults.push(s[0] / base_ch);
            if shapes.contains_key(&format!("down_blocks.{l}.2.attn.in_proj_weight")) {
                attn_levels.push(l);
            }
        }
        if channel_mults.is_empty() {
            bail!(
                "weights file has no 'down_blocks.0.1.conv1.weight'; cannot infer the model levels"
            );
        }
        let cfg = UNetConfig {
            in_ch,
            base_ch,
            channel_mults,
            time_dim,
            attn_levels,
            num_heads,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// The upsampling conv that starts up level j ≥ 1 is `upsamples.{j}` (numbered by up level,
/// like `up_blocks.{j}`); files numbered 0..L-2 are renumbered on load.
pub fn upsample_name(up_level: usize) -> String {
    format!("upsamples.{up_level}.conv")
}

fn conv(t: &mut ParamTable, p: &str, cout: usize, cin: usize, k: usize) {
    t.insert(format!("{p}.weight"), vec![cout, cin, k, k]);
    t.insert(format!("{p}.bias"), vec![cout]);
}

fn linear(t: &mut ParamTable, p: &str, fout: usize, fin: usize) {
    t.insert(format!("{p}.weight"), vec![fout, fin]);
    t.insert(format!("{p}.bias"), vec![fout]);
}

fn norm(t: &mut ParamTable, p: &str, c: usize) {
    t.insert(format!("{p}.weight"), vec![c]);
    t.insert(format!("{p}.bias"), vec![c]);
}

fn resblock(t: &mut ParamTable, p: &str, cin: usize, cout: usize, time_dim: usize) {
    norm(t, &format!("{p}.norm1"), cin);
    conv(t, &format!("{p}.conv1"), cout, cin, 3);
    linear(t, &format!("{p}.time_proj.1"), cout, time_dim);
    norm(t, &format!("{p}.norm2"), cout);
    conv(t, &format!("{p}.conv2"), cout, cout, 3);
    if cin != cout {
        conv(t, &format!("{p}.skip"), cout, cin, 1);
    }
}

fn attention(t: &mut ParamTable, p: &str, c: usize) {
    norm(t, &format!("{p}.norm"), c);
    t.insert(format!("{p}.attn.in_proj_weight"), vec![3 * c, c]);
    t.insert(format!("{p}.attn.in_proj_bias"), vec![3 * c]);
    linear(t, &format!("{p}.attn.out_proj"), c, c);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notebook_model_has_the_published_size() {
        let cfg = UNetConfig::notebook();
        assert_eq!(cfg.param_table().len(), 198);
        assert_eq!(cfg.param_count(), 12_356_161);
    }

    #[test]
    fn inference_round_trips_the_table() {
        let cfg = UNetConfig {
            in_ch: 1,
            base_ch: 12,
            channel_mults: vec![1, 3],
            time_dim: 17,
            attn_levels: vec![0, 1],
            num_heads: 3,
        };
        assert_eq!(UNetConfig::infer(&cfg.param_table(), 3).unwrap(), cfg);
        assert_eq!(
            UNetConfig::infer(&UNetConfig::notebook().param_table(), 4).unwrap(),
            UNetConfig::notebook()
        );
    }

    #[test]
    fn heads_must_divide_attention_width() {
        let err = UNetConfig::infer(&UNetConfig::notebook().param_table(), 3).unwrap_err();
        assert!(err.to_string().contains("num_heads 3"), "{err}");
    }

    #[test]
    fn group_counts() {
        assert_eq!(groups_for(64), 32);
        assert_eq!(groups_for(36), 18);
        assert_eq!(groups_for(24), 24);
        assert_eq!(groups_for(48), 24);
        assert_eq!(groups_for(7), 7);
        assert_eq!(groups_for(1), 1);
    }

    /// The first bundled prior's config (weights/base16/prior.safetensors).
    fn base16() -> UNetConfig {
        UNetConfig {
            in_ch: 1,
            base_ch: 16,
            channel_mults: vec![1, 2, 2],
            time_dim: 64,
            attn_levels: vec![2],
            num_heads: 4,
        }
    }

    #[test]
    fn time_embedding_vanishes_only_with_one_channel_per_group() {
        assert!(base16().time_embedding_vanishes());
        let base64 = UNetConfig {
            base_ch: 64,
            ..base16()
        };
        assert!(!base64.time_embedding_vanishes());
        assert!(!UNetConfig::notebook().time_embedding_vanishes());
        // One level above 32 channels is enough for the time to reach the output.
        let mixed = UNetConfig {
            channel_mults: vec![1, 2, 4],
            ..base16()
        };
        assert!(!mixed.time_embedding_vanishes());
    }

    fn refused(cfg: UNetConfig, want: &str) {
        let e = cfg.validate().unwrap_err();
        assert_eq!(e.exit_code(), 2, "{e}");
        assert!(e.to_string().contains(want), "{cfg:?}: {e}");
    }

    #[test]
    fn validation_refuses_unbuildable_and_oversized_configs() {
        let first_mult_2 = UNetConfig {
            base_ch: 8,
            channel_mults: vec![2, 2],
            attn_levels: vec![],
            ..base16()
        };
        refused(first_mult_2, "level 0 is 2, not 1");
        for levels in [MAX_LEVELS + 1, 65, 200] {
            let deep = UNetConfig {
                channel_mults: vec![1; levels],
                attn_levels: vec![],
                ..base16()
            };
            refused(deep, &format!("{levels} levels"));
        }
        let wide = UNetConfig {
            channel_mults: vec![1, usize::MAX / 8],
            attn_levels: vec![],
            ..base16()
        };
        refused(wide, "at most 8192");
        let wide_base = UNetConfig {
            base_ch: MAX_CHANNELS + 1,
            channel_mults: vec![1],
            attn_levels: vec![],
            num_heads: 1,
            ..base16()
        };
        refused(wide_base, "at most 8192");
        refused(
            UNetConfig {
                time_dim: usize::MAX / 2,
                ..base16()
            },
            "time_dim",
        );
        refused(
            UNetConfig {
                in_ch: 1 << 40,
                ..base16()
            },
            "input channels",
        );
        // Every cap met, yet the total (many wide levels) is over MAX_PARAMS.
        let heavy = UNetConfig {
            base_ch: 4096,
            channel_mults: vec![1, 2, 2, 2],
            time_dim: 1024,
            attn_levels: vec![],
            num_heads: 1,
            in_ch: 1,
        };
        refused(heavy, "parameters; at most");
        assert!(base16().validate().is_ok());
        assert_eq!(base16().size_multiple(), 4);
    }

    #[test]
    fn inference_stops_at_the_level_cap() {
        let cfg = UNetConfig {
            channel_mults: vec![1; MAX_LEVELS],
            attn_levels: vec![],
            ..base16()
        };
        let mut t = cfg.param_table();
        assert_eq!(UNetConfig::infer(&t, 4).unwrap(), cfg);
        t.insert(
            format!("down_blocks.{MAX_LEVELS}.1.conv1.weight"),
            vec![16, 16, 3, 3],
        );
        let e = UNetConfig::infer(&t, 4).unwrap_err();
        assert!(e.to_string().contains("more than 12 levels"), "{e}");
    }
}
