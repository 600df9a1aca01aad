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

    pub fn channels(&self, level: usize) -> usize {
        self.base_ch * self.channel_mults[level]
    }

    pub fn has_attention(&self, level: usize) -> bool {
        self.attn_levels.contains(&level)
    }

    /// Spatial sizes must survive every downsampling exactly.
    pub fn size_multiple(&self) -> usize {
        1 << (self.levels() - 1)
    }

    /// Checks that the config describes a buildable network.
    pub fn validate(&self) -> Result<()> {
        if self.in_ch == 0 || self.base_ch == 0 || self.time_dim == 0 {
            bail!("model config has a zero size: {self:?}");
        }
        if self.channel_mults.is_empty() || self.channel_mults.contains(&0) {
            bail!(
                "model config needs at least one level and positive channel multipliers: {self:?}"
            );
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
        Ok(())
    }

    /// Every parameter tensor the model has, with its shape.
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

    pub fn param_count(&self) -> usize {
        self.param_table()
            .values()
            .map(|s| s.iter().product::<usize>())
            .sum()
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
        let mut channel_mults = Vec::new();
        let mut attn_levels = Vec::new();
        while let Some(s) = shapes.get(&format!(
            "down_blocks.{}.1.conv1.weight",
            channel_mults.len()
        )) {
            let l = channel_mults.len();
            if base_ch == 0 || s.is_empty() || s[0] % base_ch != 0 {
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
}
