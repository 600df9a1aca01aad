//! Figures as 8-bit grayscale PNGs: labelled side-by-side comparisons and plain sample grids.
//! Images are model-space slices shown as clamp((x + 1) / 2, 0, 1), upscaled by pixel repetition.

mod font;

use std::path::Path;

use crate::bail;
use crate::error::Result;

const WHITE: u8 = 255;
const BLACK: u8 = 0;
/// Largest figure we agree to allocate (pixels); far above any sensible figure.
const MAX_PIXELS: usize = 1 << 26;
const MAX_SCALE: usize = 64;
const GRID_GAP: usize = 2;

/// One image of a comparison figure with its title and caption lines.
#[derive(Debug, Clone, PartialEq)]
pub struct Panel {
    /// Model-space values, h·w, row-major.
    pub image: Vec<f32>,
    pub h: usize,
    pub w: usize,
    pub title: String,
    pub caption: Vec<String>,
}

/// Panels side by side: title above each image, caption lines below, on white.
pub fn comparison_figure(panels: &[Panel], scale: usize, path: &Path) -> Result<()> {
    check_scale(scale)?;
    if panels.is_empty() {
        bail!("a comparison figure needs at least one panel");
    }
    for p in panels {
        check_image(&p.image, p.h, p.w, &p.title)?;
    }
    let layout = Layout::new(panels, scale);
    let mut canvas = Canvas::new(layout.width, layout.height)?;
    let mut x = layout.margin;
    for (p, &col_w) in panels.iter().zip(&layout.col_w) {
        let ts = layout.text_scale;
        canvas.text_centered(&p.title, x, col_w, layout.margin, ts);
        canvas.image(
            &p.image,
            p.h,
            p.w,
            scale,
            x + (col_w - p.w * scale) / 2,
            layout.image_top,
        );
        for (i, line) in p.caption.iter().enumerate() {
            let y = layout.caption_top + i * font::LINE_H * ts;
            canvas.text_centered(line, x, col_w, y, ts);
        }
        x += col_w + layout.gap;
    }
    canvas.save(path)
}

/// Slices in a grid, row by row, `cols` per row, separated by 2-pixel white gaps.
pub fn image_grid(
    images: &[Vec<f32>],
    h: usize,
    w: usize,
    cols: usize,
    scale: usize,
    path: &Path,
) -> Result<()> {
    check_scale(scale)?;
    if images.is_empty() || cols == 0 {
        bail!("an image grid needs at least one image and one column");
    }
    for (i, img) in images.iter().enumerate() {
        check_image(img, h, w, &format!("grid image {i}"))?;
    }
    let cols = cols.min(images.len());
    let rows = images.len().div_ceil(cols);
    let (tile_w, tile_h) = (w * scale + GRID_GAP, h * scale + GRID_GAP);
    let mut canvas = Canvas::new(cols * tile_w - GRID_GAP, rows * tile_h - GRID_GAP)?;
    for (i, img) in images.iter().enumerate() {
        canvas.image(img, h, w, scale, (i % cols) * tile_w, (i / cols) * tile_h);
    }
    canvas.save(path)
}

fn check_scale(scale: usize) -> Result<()> {
    if !(1..=MAX_SCALE).contains(&scale) {
        bail!("figure scale {scale} is out of range; use 1 to {MAX_SCALE}");
    }
    Ok(())
}

fn check_image(img: &[f32], h: usize, w: usize, what: &str) -> Result<()> {
    if h == 0 || w == 0 || Some(img.len()) != h.checked_mul(w) {
        bail!(
            "figure image '{what}' holds {} values for {h}x{w} pixels",
            img.len()
        );
    }
    Ok(())
}

/// Where things go in a comparison figure; all sizes in output pixels.
struct Layout {
    text_scale: usize,
    margin: usize,
    gap: usize,
    col_w: Vec<usize>,
    image_top: usize,
    caption_top: usize,
    width: usize,
    height: usize,
}

impl Layout {
    fn new(panels: &[Panel], scale: usize) -> Self {
        // Small images get small text so captions do not dwarf them.
        let widest = panels.iter().map(|p| p.w * scale).max().unwrap_or(0);
        let ts = if widest >= 128 { 2 } else { 1 };
        let (margin, gap, pad, line) = (8 * ts, 12 * ts, 3 * ts, font::LINE_H * ts);
        let col_w: Vec<usize> = panels
            .iter()
            .map(|p| {
                let texts = std::iter::once(&p.title).chain(&p.caption);
                let text = texts.map(|t| font::text_width(t, ts)).max().unwrap_or(0);
                text.max(p.w * scale)
            })
            .collect();
        let titled = panels.iter().any(|p| !p.title.is_empty());
        let caption_rows = panels.iter().map(|p| p.caption.len()).max().unwrap_or(0);
        let image_top = margin + if titled { line + pad } else { 0 };
        let image_h = panels.iter().map(|p| p.h * scale).max().unwrap_or(0);
        let caption_top = image_top + image_h + 2 * pad;
        let width = 2 * margin + col_w.iter().sum::<usize>() + gap * (panels.len() - 1);
        let height = caption_top + caption_rows * line + margin;
        Layout {
            text_scale: ts,
            margin,
            gap,
            col_w,
            image_top,
            caption_top,
            width,
            height,
        }
    }
}

/// An 8-bit grayscale drawing surface, white to start with.
struct Canvas {
    w: usize,
    h: usize,
    px: Vec<u8>,
}

impl Canvas {
    fn new(w: usize, h: usize) -> Result<Self> {
        if w.saturating_mul(h) > MAX_PIXELS {
            bail!("figure of {w}x{h} pixels is too large; lower the scale or the number of images");
        }
        Ok(Canvas {
            w,
            h,
            px: vec![WHITE; w * h],
        })
    }

    /// Draw a model-space image with its top-left corner at (x0, y0), each pixel as a
    /// scale x scale block.
    fn image(&mut self, img: &[f32], h: usize, w: usize, scale: usize, x0: usize, y0: usize) {
        for r in 0..h * scale {
            let src = &img[(r / scale) * w..][..w];
            let dst = &mut self.px[(y0 + r) * self.w + x0..][..w * scale];
            for (c, d) in dst.iter_mut().enumerate() {
                *d = display_level(src[c / scale]);
            }
        }
    }

    /// One line of text, centred in the column [x, x + col_w), top edge at y.
    fn text_centered(&mut self, text: &str, x: usize, col_w: usize, y: usize, scale: usize) {
        let left = x + col_w.saturating_sub(font::text_width(text, scale)) / 2;
        for (i, ch) in text.chars().enumerate() {
            self.glyph(ch, left + i * font::ADVANCE * scale, y, scale);
        }
    }

    fn glyph(&mut self, ch: char, x0: usize, y0: usize, scale: usize) {
        for r in 0..font::GLYPH_H * scale {
            for c in 0..font::GLYPH_W * scale {
                let (x, y) = (x0 + c, y0 + r);
                if x < self.w && y < self.h && font::ink(ch, r / scale, c / scale) {
                    self.px[y * self.w + x] = BLACK;
                }
            }
        }
    }

    fn save(&self, path: &Path) -> Result<()> {
        crate::io::png::write_png_raw(path, &self.px, self.h, self.w, 8)
    }
}

/// Model space to an 8-bit display level: clamp((x + 1) / 2, 0, 1) scaled and rounded.
fn display_level(x: f32) -> u8 {
    (((x + 1.0) / 2.0).clamp(0.0, 1.0) * 255.0).round() as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::png::read_png;
    use crate::tensor::Tensor;

    fn temp(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("diffrecon_fig_{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d.join(name)
    }

    fn levels(t: &Tensor) -> Vec<u8> {
        t.data()
            .iter()
            .map(|&p| (p * 255.0).round() as u8)
            .collect()
    }

    fn panel(value: f32, title: &str, caption: &[&str]) -> Panel {
        Panel {
            image: vec![value; 16 * 16],
            h: 16,
            w: 16,
            title: title.to_string(),
            caption: caption.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn display_levels_clamp_and_round() {
        assert_eq!(display_level(-1.0), 0);
        assert_eq!(display_level(-7.0), 0);
        assert_eq!(display_level(1.0), 255);
        assert_eq!(display_level(3.0), 255);
        assert_eq!(display_level(0.0), 128);
    }

    #[test]
    fn grid_places_tiles_with_white_gaps() {
        let path = temp("grid.png");
        let images: Vec<Vec<f32>> = [-1.0, 0.0, -0.5].iter().map(|&v| vec![v; 3 * 2]).collect();
        image_grid(&images, 3, 2, 2, 2, &path).unwrap();
        let t = read_png(&path).unwrap();
        // 2 columns of 4 px + gap 2; 2 rows of 6 px + gap 2.
        assert_eq!(t.shape(), &[1, 1, 14, 10]);
        let px = levels(&t);
        let at = |r: usize, c: usize| px[r * 10 + c];
        assert_eq!((at(0, 0), at(5, 3)), (0, 0));
        assert_eq!(
            (at(0, 4), at(0, 5), at(6, 0), at(7, 9)),
            (255, 255, 255, 255)
        );
        assert_eq!((at(0, 6), at(5, 9)), (128, 128));
        assert_eq!(at(8, 0), 64, "third image starts the second row");
        assert_eq!(at(8, 6), 255, "the empty cell stays background");
    }

    #[test]
    fn comparison_shows_images_and_black_text() {
        let path = temp("cmp.png");
        let panels = [
            panel(-1.0, "Truth", &["PSNR 26.45 dB"]),
            panel(0.0, "DPS", &["SSIM 0.762"]),
        ];
        comparison_figure(&panels, 1, &path).unwrap();
        let t = read_png(&path).unwrap();
        let (h, w) = (t.shape()[2], t.shape()[3]);
        let px = levels(&t);
        // Text scale 1: columns are as wide as "PSNR 26.45 dB" (13 chars x 6 - 1 = 77 px).
        assert_eq!(w, 8 + 77 + 12 + 59 + 8);
        assert_eq!(h, 8 + 11 + 3 + 16 + 6 + 11 + 8);
        let image_top = 8 + 11 + 3;
        let first_x = 8 + (77 - 16) / 2;
        assert_eq!(px[image_top * w + first_x], 0);
        assert_eq!(px[(image_top - 1) * w + first_x], 255);
        let second_x = 8 + 77 + 12 + (59 - 16) / 2;
        assert_eq!(px[(image_top + 15) * w + second_x + 15], 128);
        // Title and caption rows hold ink; the bottom margin is blank.
        let row_ink = |r: usize| px[r * w..(r + 1) * w].iter().filter(|&&v| v == 0).count();
        assert!((8..8 + 9).map(row_ink).sum::<usize>() > 20);
        assert!((image_top + 22..image_top + 31).map(row_ink).sum::<usize>() > 40);
        assert_eq!(row_ink(h - 1), 0);
    }

    #[test]
    fn large_images_get_double_size_text() {
        let path = temp("big.png");
        let p = Panel {
            image: vec![0.5; 64 * 64],
            h: 64,
            w: 64,
            title: "Reconstruction".into(),
            caption: vec![],
        };
        comparison_figure(&[p], 4, &path).unwrap();
        let t = read_png(&path).unwrap();
        assert_eq!(
            t.shape(),
            &[1, 1, 16 + 22 + 6 + 256 + 12 + 16, 16 + 256 + 16]
        );
    }

    #[test]
    fn bad_requests_are_input_errors() {
        let path = temp("bad.png");
        let mut p = panel(0.0, "x", &[]);
        assert!(comparison_figure(&[], 2, &path).is_err());
        assert!(comparison_figure(std::slice::from_ref(&p), 0, &path).is_err());
        assert!(comparison_figure(std::slice::from_ref(&p), 65, &path).is_err());
        p.image.pop();
        assert!(comparison_figure(&[p], 2, &path).is_err());
        assert!(image_grid(&[vec![0.0; 4]], 2, 2, 0, 1, &path).is_err());
        assert!(image_grid(&[vec![0.0; 3]], 2, 2, 1, 1, &path).is_err());
        assert!(image_grid(&[], 2, 2, 1, 1, &path).is_err());
    }
}
