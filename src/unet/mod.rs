//! The notebook's DiffusionUNet (a noise predictor eps(x_t, t)), written once over the backend
//! trait: the forward pass, a forward that records a tape, and the manual input-VJP that walks
//! the tape backwards (no weight gradients, no autograd).

pub mod config;
pub mod weights;

use crate::backend::{AttnParams, Backend, ConvAdd, NormArgs};
use crate::bail;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use config::groups_for;
pub use config::UNetConfig;
use weights::Params;

struct Conv<W, T = W> {
    w: W,
    b: T,
}

struct Norm<T> {
    gamma: T,
    beta: T,
    groups: usize,
}

impl<T> Norm<T> {
    /// This norm as `Backend::norm_conv2d` takes it, with SiLU after it when `silu`.
    fn args(&self, silu: bool) -> NormArgs<'_, T> {
        NormArgs {
            gamma: &self.gamma,
            beta: &self.beta,
            groups: self.groups,
            silu,
        }
    }
}

struct ResBlock<W, T> {
    norm1: Norm<T>,
    conv1: Conv<W, T>,
    /// This block's time projection among the network's stacked ones (`UNet::time_proj`).
    tp: usize,
    norm2: Norm<T>,
    conv2: Conv<W, T>,
    skip: Option<Conv<W, T>>,
}

struct Attn<T> {
    norm: Norm<T>,
    p: AttnParams<T>,
}

struct Level<W, T> {
    res0: ResBlock<W, T>,
    res1: ResBlock<W, T>,
    attn: Option<Attn<T>>,
}

/// The model's parameters on backend `B`.
pub struct UNet<B: Backend> {
    pub cfg: UNetConfig,
    /// Unique per network built in this process: the key under which a backend may keep this
    /// network's captured work (`Backend::replay`), never reused by another network.
    id: usize,
    init: Conv<B::ConvWeight, B::Buf>,
    time_mlp0: Conv<B::Buf>,
    time_mlp2: Conv<B::Buf>,
    /// Every ResBlock's time projection (SiLU, then linear) as one stacked linear layer, so the
    /// forward computes them all at once (`Backend::linear_split`); block `tp` takes columns
    /// `time_widths[..tp].sum()..` of width `time_widths[tp]`.
    time_proj: Conv<B::Buf>,
    time_widths: Vec<usize>,
    down: Vec<Level<B::ConvWeight, B::Buf>>,
    downsamples: Vec<Conv<B::ConvWeight, B::Buf>>,
    mid1: ResBlock<B::ConvWeight, B::Buf>,
    mid_attn: Attn<B::Buf>,
    mid2: ResBlock<B::ConvWeight, B::Buf>,
    up: Vec<Level<B::ConvWeight, B::Buf>>,
    upsamples: Vec<Conv<B::ConvWeight, B::Buf>>,
    out_norm: Norm<B::Buf>,
    out_conv: Conv<B::ConvWeight, B::Buf>,
}

/// What the VJP needs from a ResBlock's forward: its input and the input of norm2.
struct ResTape<T> {
    x: T,
    h: T,
}

/// What the VJP needs from an attention block: its input and the normalised tokens.
struct AttnTape<T> {
    x: T,
    y: T,
}

struct LevelTape<T> {
    res0: ResTape<T>,
    res1: ResTape<T>,
    attn: Option<AttnTape<T>>,
}

/// A block's output and, when recording, its tape.
type Traced<T, Tp> = Result<(T, Option<Tp>)>;

/// Everything recorded by `forward_with_tape` for one (x, t).
pub struct Tape<T> {
    x_shape: Vec<usize>,
    down: Vec<LevelTape<T>>,
    /// Input shape of each level's downsampling conv.
    down_in: Vec<Vec<usize>>,
    mid1: ResTape<T>,
    mid_attn: AttnTape<T>,
    mid2: ResTape<T>,
    up: Vec<LevelTape<T>>,
    /// Shape of the upsampled tensor each up level's conv reads (None at the deepest level).
    up_in: Vec<Option<Vec<usize>>>,
    /// Channels of the decoder half of each concat.
    concat_split: Vec<usize>,
    out_in: T,
}

/// Builds the model's structs from the parameter map, uploading as it goes (the time
/// projections are kept on the host until all are read, then stacked and uploaded once).
struct Loader<'a, B: Backend> {
    be: &'a B,
    params: &'a Params,
    time_projections: std::cell::RefCell<Vec<(&'a Tensor, &'a Tensor)>>,
}

impl<'a, B: Backend> Loader<'a, B> {
    fn get(&self, name: &str) -> Result<&'a Tensor> {
        self.params
            .get(name)
            .ok_or_else(|| Error::input(format!("weights have no tensor '{name}'")))
    }

    fn buf(&self, name: &str) -> Result<B::Buf> {
        self.be.upload(self.get(name)?)
    }

    /// Notes a ResBlock's time projection for `stacked_time_projections`; returns its index.
    fn time_projection(&self, p: &str) -> Result<usize> {
        let w = self.get(&format!("{p}.weight"))?;
        let b = self.get(&format!("{p}.bias"))?;
        let mut all = self.time_projections.borrow_mut();
        all.push((w, b));
        Ok(all.len() - 1)
    }

    /// The time projections noted so far as one linear layer (weights stacked by output rows,
    /// biases likewise) and their widths.
    fn stacked_time_projections(&self) -> Result<(Conv<B::Buf>, Vec<usize>)> {
        let all = self.time_projections.borrow();
        let widths: Vec<usize> = all.iter().map(|(_, b)| b.len()).collect();
        let rows: usize = widths.iter().sum();
        let (w, b): (Vec<f32>, Vec<f32>) = (
            all.iter().flat_map(|(w, _)| w.data()).copied().collect(),
            all.iter().flat_map(|(_, b)| b.data()).copied().collect(),
        );
        if rows == 0 || w.len() % rows != 0 {
            bail!(
                "the ResBlocks' time projections do not stack: widths {widths:?}, {} weights",
                w.len()
            );
        }
        let fin = w.len() / rows;
        Ok((
            Conv {
                w: self.be.upload(&Tensor::new(vec![rows, fin], w)?)?,
                b: self.be.upload(&Tensor::new(vec![rows], b)?)?,
            },
            widths,
        ))
    }

    /// A linear layer (weight (out, in)).
    fn linear(&self, p: &str) -> Result<Conv<B::Buf>> {
        Ok(Conv {
            w: self.buf(&format!("{p}.weight"))?,
            b: self.buf(&format!("{p}.bias"))?,
        })
    }

    /// A 2-D convolution, its weights as the backend's kernels take them.
    fn conv(&self, p: &str) -> Result<Conv<B::ConvWeight, B::Buf>> {
        Ok(Conv {
            w: self.be.conv_weight(self.buf(&format!("{p}.weight"))?)?,
            b: self.buf(&format!("{p}.bias"))?,
        })
    }

    fn norm(&self, p: &str, c: usize) -> Result<Norm<B::Buf>> {
        Ok(Norm {
            gamma: self.buf(&format!("{p}.weight"))?,
            beta: self.buf(&format!("{p}.bias"))?,
            groups: groups_for(c),
        })
    }

    fn resblock(
        &self,
        p: &str,
        cin: usize,
        cout: usize,
    ) -> Result<ResBlock<B::ConvWeight, B::Buf>> {
        Ok(ResBlock {
            norm1: self.norm(&format!("{p}.norm1"), cin)?,
            conv1: self.conv(&format!("{p}.conv1"))?,
            tp: self.time_projection(&format!("{p}.time_proj.1"))?,
            norm2: self.norm(&format!("{p}.norm2"), cout)?,
            conv2: self.conv(&format!("{p}.conv2"))?,
            skip: if cin != cout {
                Some(self.conv(&format!("{p}.skip"))?)
            } else {
                None
            },
        })
    }

    fn attn(&self, p: &str, c: usize) -> Result<Attn<B::Buf>> {
        Ok(Attn {
            norm: self.norm(&format!("{p}.norm"), c)?,
            p: AttnParams {
                in_w: self.buf(&format!("{p}.attn.in_proj_weight"))?,
                in_b: self.buf(&format!("{p}.attn.in_proj_bias"))?,
                out_w: self.buf(&format!("{p}.attn.out_proj.weight"))?,
                out_b: self.buf(&format!("{p}.attn.out_proj.bias"))?,
            },
        })
    }

    fn level(
        &self,
        p: &str,
        cin: usize,
        c: usize,
        attn: bool,
    ) -> Result<Level<B::ConvWeight, B::Buf>> {
        Ok(Level {
            res0: self.resblock(&format!("{p}.0"), cin, c)?,
            res1: self.resblock(&format!("{p}.1"), c, c)?,
            attn: if attn {
                Some(self.attn(&format!("{p}.2"), c)?)
            } else {
                None
            },
        })
    }
}

/// Sinusoidal embedding (sin block, then cos block, a zero appended for odd dims): (n, dim).
pub fn timestep_embedding(t: &[f32], dim: usize) -> Tensor {
    let half = dim / 2;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10000f32.ln()) * i as f32 / half as f32).exp())
        .collect();
    let mut data = Vec::with_capacity(t.len() * dim);
    for &tv in t {
        let args: Vec<f32> = freqs.iter().map(|f| tv * f).collect();
        data.extend(args.iter().map(|a| a.sin()));
        data.extend(args.iter().map(|a| a.cos()));
        if dim % 2 == 1 {
            data.push(0.0);
        }
    }
    Tensor::new(vec![t.len(), dim], data).expect("sized above")
}

impl<B: Backend> UNet<B> {
    /// Upload validated parameters (from `weights::load` or `weights::synthetic`).
    pub fn new(be: &B, cfg: UNetConfig, params: &Params) -> Result<Self> {
        cfg.validate()?;
        weights::check_params(&cfg, params)?;
        let ld = Loader {
            be,
            params,
            time_projections: Default::default(),
        };
        let levels = cfg.levels();
        let mut down = Vec::new();
        let mut downsamples = Vec::new();
        let mut c_prev = cfg.base_ch;
        for l in 0..levels {
            let c = cfg.channels(l);
            down.push(ld.level(&format!("down_blocks.{l}"), c_prev, c, cfg.has_attention(l))?);
            if l + 1 < levels {
                downsamples.push(ld.conv(&format!("downsamples.{l}.conv"))?);
            }
            c_prev = c;
        }
        let c_mid = c_prev;
        let mut up = Vec::new();
        let mut upsamples = Vec::new();
        for j in 0..levels {
            let l = levels - 1 - j;
            let c = cfg.channels(l);
            if j > 0 {
                upsamples.push(ld.conv(&config::upsample_name(j))?);
            }
            up.push(ld.level(
                &format!("up_blocks.{j}"),
                c_prev + c,
                c,
                cfg.has_attention(l),
            )?);
            c_prev = c;
        }
        let (mid1, mid2) = (
            ld.resblock("mid_block1", c_mid, c_mid)?,
            ld.resblock("mid_block2", c_mid, c_mid)?,
        );
        let (time_proj, time_widths) = ld.stacked_time_projections()?;
        static NEXT_ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);
        Ok(UNet {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            init: ld.conv("init")?,
            time_mlp0: ld.linear("time_mlp.0")?,
            time_mlp2: ld.linear("time_mlp.2")?,
            time_proj,
            time_widths,
            mid1,
            mid_attn: ld.attn("mid_attn", c_mid)?,
            mid2,
            out_norm: ld.norm("out_norm", cfg.base_ch)?,
            out_conv: ld.conv("out_conv")?,
            down,
            downsamples,
            up,
            upsamples,
            cfg,
        })
    }

    /// Shape and timestep checks shared by every entry point.
    pub fn check_input(&self, shape: &[usize], t: &[f32]) -> Result<()> {
        let m = self.cfg.size_multiple();
        match *shape {
            [n, c, h, w] if c == self.cfg.in_ch && n > 0 && h > 0 && w > 0 && h % m == 0 && w % m == 0 => {
                if t.len() != 1 && t.len() != n {
                    bail!("{} timesteps given for a batch of {n}; give one per item or a single one", t.len());
                }
                Ok(())
            }
            _ => bail!(
                "input shape {shape:?} does not fit the model: expected (N, {}, H, W) with H and W positive multiples of {m}",
                self.cfg.in_ch
            ),
        }
    }

    /// eps(x, t): one timestep per batch item, or one for all. Everything after the upload of
    /// the sinusoidal embedding is device work of fixed shapes, handed to `Backend::replay`:
    /// the CUDA backend captures it once per input shape as a CUDA graph and replays it.
    pub fn forward(&self, be: &B, x: &B::Buf, t: &[f32]) -> Result<B::Buf> {
        let emb = self.embedding(be, x, t)?;
        be.replay(self.replay_key(&[]), &[x, &emb], &|inputs| {
            self.run(be, inputs[0], inputs[1], None)
        })
    }

    /// eps(x, t) from an uploaded embedding (`embedding`) without a replay of its own: for
    /// sampler steps that hand the whole step to `Backend::replay`.
    pub fn forward_emb(&self, be: &B, x: &B::Buf, emb: &B::Buf) -> Result<B::Buf> {
        self.run(be, x, emb, None)
    }

    /// A `Backend::replay` key for work of this network that also depends on the given values
    /// (those its kernels take as arguments), e.g. a sampler step's timesteps and coefficients.
    pub fn replay_key(&self, values: &[u64]) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.id, values).hash(&mut h);
        h.finish() as usize
    }

    /// As `forward`, also returning what `vjp` needs.
    pub fn forward_with_tape(
        &self,
        be: &B,
        x: &B::Buf,
        t: &[f32],
    ) -> Result<(B::Buf, Tape<B::Buf>)> {
        let emb = self.embedding(be, x, t)?;
        self.forward_with_tape_emb(be, x, &emb)
    }

    /// `forward_with_tape` from an uploaded embedding (`embedding`): device work only.
    pub fn forward_with_tape_emb(
        &self,
        be: &B,
        x: &B::Buf,
        emb: &B::Buf,
    ) -> Result<(B::Buf, Tape<B::Buf>)> {
        let mut tape = None;
        let eps = self.run(be, x, emb, Some(&mut tape))?;
        Ok((eps, tape.expect("run fills the tape when asked")))
    }

    /// The checked input's sinusoidal time embedding (n, time_dim), uploaded.
    pub fn embedding(&self, be: &B, x: &B::Buf, t: &[f32]) -> Result<B::Buf> {
        let n = be.shape(x)[0];
        self.check_input(be.shape(x), t)?;
        let ts: Vec<f32> = if t.len() == 1 {
            vec![t[0]; n]
        } else {
            t.to_vec()
        };
        be.upload(&timestep_embedding(&ts, self.cfg.time_dim))
    }

    /// The time MLP on the uploaded embedding: (n, time_dim).
    fn time_vector(&self, be: &B, emb: &B::Buf) -> Result<B::Buf> {
        let hidden = be.linear(emb, &self.time_mlp0.w, &self.time_mlp0.b, false)?;
        be.linear(&hidden, &self.time_mlp2.w, &self.time_mlp2.b, true)
    }

    fn run(
        &self,
        be: &B,
        x: &B::Buf,
        emb: &B::Buf,
        tape_out: Option<&mut Option<Tape<B::Buf>>>,
    ) -> Result<B::Buf> {
        let record = tape_out.is_some();
        let temb = self.time_vector(be, emb)?;
        let tps = be.linear_split(
            &temb,
            &self.time_proj.w,
            &self.time_proj.b,
            true,
            &self.time_widths,
        )?;
        let mut h = be.conv2d(x, &self.init.w, &self.init.b, 1, 1)?;
        let mut skips = Vec::new();
        let (mut down_t, mut down_in) = (Vec::new(), Vec::new());
        for (l, level) in self.down.iter().enumerate() {
            let lt;
            (h, lt) = self.level_forward(be, level, h, &tps, record)?;
            down_t.extend(lt);
            skips.push(h.clone());
            if let Some(ds) = self.downsamples.get(l) {
                down_in.push(be.shape(&h).to_vec());
                h = be.conv2d(&h, &ds.w, &ds.b, 2, 1)?;
            }
        }
        let (h1, m1) = self.res_forward(be, &self.mid1, h, &tps, record)?;
        let (h2, ma) = self.attn_forward(be, &self.mid_attn, h1, record)?;
        let (mut h, m2) = self.res_forward(be, &self.mid2, h2, &tps, record)?;
        let (mut up_t, mut up_in, mut concat_split) = (Vec::new(), Vec::new(), Vec::new());
        for (j, level) in self.up.iter().enumerate() {
            up_in.push(None);
            if j > 0 {
                let us = &self.upsamples[j - 1];
                let u = be.upsample2x(&h)?;
                up_in[j] = Some(be.shape(&u).to_vec());
                h = be.conv2d(&u, &us.w, &us.b, 1, 1)?;
            }
            concat_split.push(be.shape(&h)[1]);
            let skip = skips.pop().expect("one skip per level");
            h = be.concat_channels(&h, &skip)?;
            let lt;
            (h, lt) = self.level_forward(be, level, h, &tps, record)?;
            up_t.extend(lt);
        }
        let (head, norm) = (&self.out_conv, self.out_norm.args(true));
        let eps = be.norm_conv2d(&h, &norm, &head.w, &head.b, 1, 1, ConvAdd::Nothing)?;
        if let Some(slot) = tape_out {
            *slot = Some(Tape {
                x_shape: be.shape(x).to_vec(),
                down: down_t,
                down_in,
                mid1: m1.expect("recorded"),
                mid_attn: ma.expect("recorded"),
                mid2: m2.expect("recorded"),
                up: up_t,
                up_in,
                concat_split,
                out_in: h,
            });
        }
        Ok(eps)
    }

    /// dL/dx given r = dL/d eps at the taped point: Jᵀ r.
    pub fn vjp(&self, be: &B, tape: &Tape<B::Buf>, r: &B::Buf) -> Result<B::Buf> {
        let da = be.conv2d_vjp(r, &self.out_conv.w, be.shape(&tape.out_in), 1, 1)?;
        let n = &self.out_norm;
        let mut dh = be.group_norm_vjp(&tape.out_in, &n.gamma, &n.beta, n.groups, true, &da)?;
        let mut d_skips = Vec::new();
        for j in (0..self.up.len()).rev() {
            dh = self.level_vjp(be, &self.up[j], &tape.up[j], dh)?;
            let (d_dec, d_skip) = be.split_channels(&dh, tape.concat_split[j])?;
            d_skips.push(d_skip); // pushed for up levels L-1..0 = down levels 0..L-1
            dh = d_dec;
            if let Some(shape) = &tape.up_in[j] {
                let du = be.conv2d_vjp(&dh, &self.upsamples[j - 1].w, shape, 1, 1)?;
                dh = be.upsample2x_vjp(&du)?;
            }
        }
        dh = self.res_vjp(be, &self.mid2, &tape.mid2, dh)?;
        dh = self.attn_vjp(be, &self.mid_attn, &tape.mid_attn, dh)?;
        dh = self.res_vjp(be, &self.mid1, &tape.mid1, dh)?;
        for l in (0..self.down.len()).rev() {
            if let Some(ds) = self.downsamples.get(l) {
                dh = be.conv2d_vjp(&dh, &ds.w, &tape.down_in[l], 2, 1)?;
            }
            be.add_assign(&mut dh, &d_skips[l])?;
            dh = self.level_vjp(be, &self.down[l], &tape.down[l], dh)?;
        }
        be.conv2d_vjp(&dh, &self.init.w, &tape.x_shape, 1, 1)
    }

    fn level_forward(
        &self,
        be: &B,
        level: &Level<B::ConvWeight, B::Buf>,
        h: B::Buf,
        tps: &[B::Buf],
        record: bool,
    ) -> Traced<B::Buf, LevelTape<B::Buf>> {
        let (h, r0) = self.res_forward(be, &level.res0, h, tps, record)?;
        let (mut h, r1) = self.res_forward(be, &level.res1, h, tps, record)?;
        let mut at = None;
        if let Some(a) = &level.attn {
            (h, at) = self.attn_forward(be, a, h, record)?;
        }
        let tape = record.then(|| LevelTape {
            res0: r0.expect("recorded"),
            res1: r1.expect("recorded"),
            attn: at,
        });
        Ok((h, tape))
    }

    fn level_vjp(
        &self,
        be: &B,
        level: &Level<B::ConvWeight, B::Buf>,
        tape: &LevelTape<B::Buf>,
        mut d: B::Buf,
    ) -> Result<B::Buf> {
        if let (Some(a), Some(at)) = (&level.attn, &tape.attn) {
            d = self.attn_vjp(be, a, at, d)?;
        }
        d = self.res_vjp(be, &level.res1, &tape.res1, d)?;
        self.res_vjp(be, &level.res0, &tape.res0, d)
    }

    fn res_forward(
        &self,
        be: &B,
        rb: &ResBlock<B::ConvWeight, B::Buf>,
        x: B::Buf,
        tps: &[B::Buf],
        record: bool,
    ) -> Traced<B::Buf, ResTape<B::Buf>> {
        let tp = tps
            .get(rb.tp)
            .ok_or_else(|| Error::internal("no time projection"))?;
        // h = conv1(silu(norm1(x))) + tp[n, c], the time-embedding add fused into conv1's
        // epilogue: h is still materialised, as the tape (norm2's input) needs it.
        let (c1, n1) = (&rb.conv1, rb.norm1.args(true));
        let h = be.norm_conv2d(&x, &n1, &c1.w, &c1.b, 1, 1, ConvAdd::Channel(tp))?;
        // out = conv2(silu(norm2(h))) + (skip(x) or x), the residual add fused into conv2's
        // epilogue.
        let (c2, n2) = (&rb.conv2, rb.norm2.args(true));
        let out = match &rb.skip {
            Some(s) => {
                let skip = be.conv2d(&x, &s.w, &s.b, 1, 0)?;
                be.norm_conv2d(&h, &n2, &c2.w, &c2.b, 1, 1, ConvAdd::Residual(&skip))?
            }
            None => be.norm_conv2d(&h, &n2, &c2.w, &c2.b, 1, 1, ConvAdd::Residual(&x))?,
        };
        Ok((out, record.then_some(ResTape { x, h })))
    }

    fn res_vjp(
        &self,
        be: &B,
        rb: &ResBlock<B::ConvWeight, B::Buf>,
        tape: &ResTape<B::Buf>,
        d: B::Buf,
    ) -> Result<B::Buf> {
        let x_shape = be.shape(&tape.x).to_vec();
        let d_skip = match &rb.skip {
            Some(s) => be.conv2d_vjp(&d, &s.w, &x_shape, 1, 0)?,
            None => d.clone(),
        };
        let db = be.conv2d_vjp(&d, &rb.conv2.w, be.shape(&tape.h), 1, 1)?;
        let dh = be.group_norm_vjp(
            &tape.h,
            &rb.norm2.gamma,
            &rb.norm2.beta,
            rb.norm2.groups,
            true,
            &db,
        )?;
        let da = be.conv2d_vjp(&dh, &rb.conv1.w, &x_shape, 1, 1)?;
        let mut dx = be.group_norm_vjp(
            &tape.x,
            &rb.norm1.gamma,
            &rb.norm1.beta,
            rb.norm1.groups,
            true,
            &da,
        )?;
        be.add_assign(&mut dx, &d_skip)?;
        Ok(dx)
    }

    fn attn_forward(
        &self,
        be: &B,
        a: &Attn<B::Buf>,
        x: B::Buf,
        record: bool,
    ) -> Traced<B::Buf, AttnTape<B::Buf>> {
        let y = be.group_norm(&x, &a.norm.gamma, &a.norm.beta, a.norm.groups, false)?;
        let out = be.attention_residual(&y, &a.p, self.cfg.num_heads, &x)?;
        Ok((out, record.then_some(AttnTape { x, y })))
    }

    fn attn_vjp(
        &self,
        be: &B,
        a: &Attn<B::Buf>,
        tape: &AttnTape<B::Buf>,
        d: B::Buf,
    ) -> Result<B::Buf> {
        let dy = be.attention_vjp(&tape.y, &a.p, self.cfg.num_heads, &d)?;
        let mut dx = be.group_norm_vjp(
            &tape.x,
            &a.norm.gamma,
            &a.norm.beta,
            a.norm.groups,
            false,
            &dy,
        )?;
        be.add_assign(&mut dx, &d)?;
        Ok(dx)
    }
}

#[cfg(test)]
mod tests;
