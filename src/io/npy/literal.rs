//! The subset of Python literals that .npy header dicts are written in.

/// The subset of Python literals that .npy headers use.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Bool(bool),
    Int(usize),
    Tuple(Vec<Lit>),
    Dict(Vec<(String, Lit)>),
    /// Lists appear in structured dtypes, which we reject later with a clear message.
    List,
}

/// A tiny recursive-descent parser; depth is bounded so hostile headers cannot overflow the stack.
pub(super) struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        Parser {
            s: text.as_bytes(),
            i: 0,
            depth: 0,
        }
    }

    fn skip_ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    pub(super) fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.i == self.s.len()
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.s.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.i += 1;
        }
        hit
    }

    pub(super) fn value(&mut self) -> Option<Lit> {
        if self.depth > 16 {
            return None;
        }
        self.depth += 1;
        let v = match self.peek()? {
            b'{' => self.dict(),
            b'(' => self.tuple(),
            b'[' => self.list(),
            b'\'' | b'"' => self.string().map(Lit::Str),
            b'0'..=b'9' => self.int().map(Lit::Int),
            _ => self.word(),
        };
        self.depth -= 1;
        v
    }

    /// Comma-separated items up to `close`, allowing a trailing comma.
    fn items<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::new();
        loop {
            if self.eat(close) {
                return Some(out);
            }
            out.push(item(self)?);
            if !self.eat(b',') {
                return self.eat(close).then_some(out);
            }
        }
    }

    fn dict(&mut self) -> Option<Lit> {
        self.i += 1;
        let entries = self.items(b'}', |p| {
            let key = p.string()?;
            p.eat(b':').then_some(())?;
            Some((key, p.value()?))
        })?;
        Some(Lit::Dict(entries))
    }

    fn tuple(&mut self) -> Option<Lit> {
        self.i += 1;
        Some(Lit::Tuple(self.items(b')', |p| p.value())?))
    }

    fn list(&mut self) -> Option<Lit> {
        self.i += 1;
        self.items(b']', |p| p.value())?;
        Some(Lit::List)
    }

    fn string(&mut self) -> Option<String> {
        let quote = self.peek().filter(|&q| q == b'\'' || q == b'"')?;
        let start = self.i + 1;
        let len = self.s[start..].iter().position(|&c| c == quote)?;
        self.i = start + len + 1;
        String::from_utf8(self.s[start..start + len].to_vec()).ok()
    }

    fn int(&mut self) -> Option<usize> {
        let start = self.i;
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        // Python 2 era files may write long integers as `64L`.
        let text = std::str::from_utf8(&self.s[start..self.i]).ok()?;
        if self.s.get(self.i) == Some(&b'L') {
            self.i += 1;
        }
        text.parse().ok()
    }

    fn word(&mut self) -> Option<Lit> {
        let rest = &self.s[self.i..];
        for (w, v) in [(&b"True"[..], true), (&b"False"[..], false)] {
            if rest.starts_with(w) {
                self.i += w.len();
                return Some(Lit::Bool(v));
            }
        }
        None
    }
}
