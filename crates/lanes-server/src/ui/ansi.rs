//! ANSI colours in job logs, turned into text spans with CSS classes. Pure.
//!
//! Only SGR sequences (`ESC [ … m`) become styles: bold, dim, italic, underline and the 16
//! colours (the 256-colour palette is folded onto them). Every other escape sequence is dropped,
//! and a carriage return keeps what follows it, as a terminal would show a progress line.
//! The spans carry plain text; the template escapes it, so a log can never inject markup.
//! `assets/lanes.js` does the same for lines that arrive live; the two must agree.

/// A run of text with one style.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    /// Space-separated CSS classes (`b fg1`), empty for plain text.
    pub(crate) class: String,
    pub(crate) text: String,
}

/// The style in effect.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Style {
    bold: bool,
    dim: bool,
    italic: bool,
    underline: bool,
    fg: Option<u8>,
    bg: Option<u8>,
}

impl Style {
    fn class(self) -> String {
        let mut parts: Vec<String> = Vec::new();
        if self.bold {
            parts.push("b".into());
        }
        if self.dim {
            parts.push("d".into());
        }
        if self.italic {
            parts.push("i".into());
        }
        if self.underline {
            parts.push("u".into());
        }
        if let Some(c) = self.fg {
            parts.push(format!("fg{c}"));
        }
        if let Some(c) = self.bg {
            parts.push(format!("bg{c}"));
        }
        parts.join(" ")
    }

    fn apply(&mut self, params: &str) {
        let mut codes = params.split(';').map(|p| {
            if p.is_empty() {
                Some(0)
            } else {
                p.parse::<u16>().ok()
            }
        });
        while let Some(code) = codes.next() {
            let Some(code) = code else { continue };
            match code {
                0 => *self = Style::default(),
                1 => self.bold = true,
                2 => self.dim = true,
                3 => self.italic = true,
                4 => self.underline = true,
                22 => {
                    self.bold = false;
                    self.dim = false;
                }
                23 => self.italic = false,
                24 => self.underline = false,
                30..=37 => self.fg = Some((code - 30) as u8),
                39 => self.fg = None,
                40..=47 => self.bg = Some((code - 40) as u8),
                49 => self.bg = None,
                90..=97 => self.fg = Some((code - 90 + 8) as u8),
                100..=107 => self.bg = Some((code - 100 + 8) as u8),
                38 | 48 => {
                    // 38;5;N picks from the 256-colour palette; 38;2;R;G;B is true colour, which
                    // has no class: it is read and dropped.
                    let colour = match codes.next().flatten() {
                        Some(5) => codes.next().flatten().map(fold_256),
                        Some(2) => {
                            codes.next();
                            codes.next();
                            codes.next();
                            None
                        }
                        _ => None,
                    };
                    if code == 38 {
                        self.fg = colour;
                    } else {
                        self.bg = colour;
                    }
                }
                _ => {}
            }
        }
    }
}

/// A 256-palette colour folded onto the 16 colours that have classes.
fn fold_256(n: u16) -> u8 {
    match n {
        0..=15 => n as u8,
        // The 6×6×6 cube: the brightest channel decides, bright when it is high.
        16..=231 => {
            let i = n - 16;
            let (r, g, b) = (i / 36, (i / 6) % 6, i % 6);
            let max = r.max(g).max(b);
            let bit = |c: u16| u8::from(c * 2 > max && c > 0);
            let base = bit(r) | (bit(g) << 1) | (bit(b) << 2);
            if max >= 4 { base + 8 } else { base }
        }
        // The grey ramp.
        _ => {
            if n < 244 {
                8
            } else {
                7
            }
        }
    }
}

/// Splits one line (no newline) into styled spans, starting from and updating `style`, which
/// carries over to the next line as in a terminal.
pub(crate) fn line(text: &str, style: &mut Style) -> Vec<Span> {
    // A carriage return rewinds the line; what a terminal shows is what follows the last one
    // that is followed by anything.
    let text = match text.trim_end_matches('\r').rsplit_once('\r') {
        Some((_, rest)) => rest,
        None => text.trim_end_matches('\r'),
    };
    let mut spans: Vec<Span> = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    let push = |spans: &mut Vec<Span>, current: &mut String, style: Style| {
        if current.is_empty() {
            return;
        }
        let class = style.class();
        match spans.last_mut() {
            Some(last) if last.class == class => last.text.push_str(current),
            _ => spans.push(Span {
                class,
                text: std::mem::take(current),
            }),
        }
        current.clear();
    };
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            // Other control characters would only show as boxes.
            if !c.is_control() || c == '\t' {
                current.push(c);
            }
            continue;
        }
        match chars.peek() {
            Some('[') => {
                chars.next();
                let mut params = String::new();
                let mut end = None;
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        end = Some(c);
                        break;
                    }
                    params.push(c);
                }
                if end == Some('m') {
                    push(&mut spans, &mut current, *style);
                    style.apply(&params);
                }
            }
            // OSC (`ESC ]` … BEL or `ESC \`): titles and hyperlinks, dropped.
            Some(']') => {
                chars.next();
                while let Some(c) = chars.next() {
                    if c == '\u{7}' || (c == '\u{1b}' && chars.peek() == Some(&'\\')) {
                        if c == '\u{1b}' {
                            chars.next();
                        }
                        break;
                    }
                }
            }
            Some(_) => {
                chars.next();
            }
            None => {}
        }
    }
    push(&mut spans, &mut current, *style);
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(text: &str) -> Vec<(String, String)> {
        let mut style = Style::default();
        line(text, &mut style)
            .into_iter()
            .map(|s| (s.class, s.text))
            .collect()
    }

    #[test]
    fn colours_become_classes_and_reset_ends_them() {
        assert_eq!(
            spans("\u{1b}[1;31merror\u{1b}[0m: bad"),
            [
                ("b fg1".into(), "error".into()),
                (String::new(), ": bad".into())
            ]
        );
        assert_eq!(spans("\u{1b}[92mok"), [("fg10".into(), "ok".into())]);
        assert_eq!(spans("\u{1b}[38;5;196mred"), [("fg9".into(), "red".into())]);
    }

    #[test]
    fn markup_stays_text_and_other_sequences_are_dropped() {
        assert_eq!(
            spans("<b>\u{1b}[2K\u{1b}]0;title\u{7}&</b>"),
            [(String::new(), "<b>&</b>".into())]
        );
    }

    #[test]
    fn a_carriage_return_keeps_the_last_rewrite_and_style_carries_over() {
        assert_eq!(spans("10%\r50%\r100%\r"), [(String::new(), "100%".into())]);
        let mut style = Style::default();
        line("\u{1b}[33mwarn", &mut style);
        let next = line("still yellow", &mut style);
        assert_eq!(next[0].class, "fg3");
    }
}
