//! Diagnostics about what the user wrote: where it is, what is wrong, what to do.
//!
//! A diagnostic is data. The CLI renders it (with a source snippet) and `--json` prints it; the
//! server will show it for a run whose catalog does not validate. Nothing here formats colors.

use serde::Serialize;
use std::ops::Range;

/// One named text that diagnostics point into (the catalog, a pins file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Source {
    /// The name shown to users: a repository-relative path such as `lanes.toml`.
    pub name: String,
    /// The full text.
    pub text: String,
}

impl Source {
    /// A source named `name` with contents `text`.
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: text.into(),
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = floor_char_boundary(&self.text, offset.min(self.text.len()));
        let before = &self.text[..offset];
        let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        (line, column)
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// One problem in a source, with its location resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Stable machine-readable code, such as `catalog::unknown-key`.
    pub code: &'static str,
    /// The name of the source it points into.
    pub file: String,
    /// 1-based line of the start of the span.
    pub line: usize,
    /// 1-based column (in characters) of the start of the span.
    pub column: usize,
    /// Byte range in the source.
    #[serde(skip)]
    pub span: Range<usize>,
    /// What is wrong, lowercase, standing alone.
    pub message: String,
    /// A short label put under the snippet.
    pub label: String,
    /// What to do about it.
    pub help: Option<String>,
}

/// Collects diagnostics for one source while it is being checked.
#[derive(Debug)]
pub(crate) struct Sink<'s> {
    source: &'s Source,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'s> Sink<'s> {
    pub(crate) fn new(source: &'s Source) -> Self {
        Self {
            source,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn source(&self) -> &'s Source {
        self.source
    }

    pub(crate) fn push(
        &mut self,
        code: &'static str,
        span: Range<usize>,
        message: impl Into<String>,
        label: impl Into<String>,
        help: Option<String>,
    ) {
        let (line, column) = self.source.line_col(span.start);
        self.diagnostics.push(Diagnostic {
            code,
            file: self.source.name.clone(),
            line,
            column,
            span,
            message: message.into(),
            label: label.into(),
            help,
        });
    }
}

/// A help line: "did you mean `x`?" for the nearest candidate, else `otherwise()`.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    otherwise: impl FnOnce() -> String,
) -> String {
    match nearest(word, candidates) {
        Some(near) => format!("did you mean `{near}`?"),
        None => otherwise(),
    }
}

/// The nearest of `candidates` to `word`, if one is close enough to be a likely typo.
fn nearest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(word, c), c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_lines_and_characters() {
        let src = Source::new("x", "ab\ncdé f\n");
        assert_eq!(src.line_col(0), (1, 1));
        assert_eq!(src.line_col(3), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(src.line_col(7), (2, 4));
    }

    #[test]
    fn nearest_suggests_typos_only() {
        assert_eq!(
            nearest("concurency", ["concurrency", "needs"]),
            Some("concurrency")
        );
        assert_eq!(nearest("zzz", ["concurrency", "needs"]), None);
    }
}
