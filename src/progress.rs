//! A one-line progress bar on stderr, shown only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct ProgressBar {
    label: String,
    enabled: bool,
    start: Instant,
}

impl ProgressBar {
    pub fn new(label: &str) -> Self {
        ProgressBar {
            label: label.to_string(),
            enabled: std::io::stderr().is_terminal(),
            start: Instant::now(),
        }
    }

    pub fn update(&mut self, done: usize, total: usize) {
        if !self.enabled || total == 0 {
            return;
        }
        let width = 30;
        let filled = done * width / total;
        let bar: String = "#".repeat(filled) + &" ".repeat(width - filled);
        let secs = self.start.elapsed().as_secs_f64();
        eprint!("\r{} [{bar}] {done}/{total} {secs:.1}s", self.label);
        if done >= total {
            eprintln!();
        }
        std::io::stderr().flush().ok();
    }
}
