//! Secret values out of step logs: every occurrence of a value, and of its base64 and
//! URL-encoded forms, becomes `***` before a line is written anywhere.
//!
//! Masking happens on whole lines as the executor reads them from the step, so a value the step
//! writes in two pieces (with a pause, or across the agent's log batches) is still one line here
//! and is masked. A value that spans lines is masked line by line.

use aho_corasick::{AhoCorasick, MatchKind};
use base64::Engine;

/// What replaces a secret.
pub const MASK: &str = "***";

/// Shorter values would mask ordinary text (a secret of `1` would blank every digit).
const SHORTEST: usize = 4;

/// The forms of a set of secret values to mask.
#[derive(Clone, Debug, Default)]
pub struct Masker {
    matcher: Option<AhoCorasick>,
}

impl Masker {
    /// A masker for `values` (each at least 4 bytes is masked; shorter ones cannot be told
    /// from ordinary text).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Masker {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for value in values {
            for part in std::iter::once(value).chain(value.lines()) {
                for form in forms(part.as_bytes()) {
                    if form.len() >= SHORTEST && !patterns.contains(&form) {
                        patterns.push(form);
                    }
                }
            }
        }
        if patterns.is_empty() {
            return Masker::default();
        }
        let matcher = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&patterns)
            .expect("a few literal patterns always build");
        Masker {
            matcher: Some(matcher),
        }
    }

    /// Whether there is anything to mask.
    pub fn is_empty(&self) -> bool {
        self.matcher.is_none()
    }

    /// `line` with every secret form replaced by [`MASK`].
    pub fn apply(&self, line: &[u8]) -> Vec<u8> {
        match &self.matcher {
            Some(m) => m.replace_all_bytes(line, &vec![MASK.as_bytes(); m.patterns_len()]),
            None => line.to_vec(),
        }
    }
}

/// The value, its URL encoding, and the parts of its base64 encodings that depend only on the
/// value, at each of the three byte alignments it can have inside a longer encoded text.
fn forms(value: &[u8]) -> Vec<Vec<u8>> {
    if value.len() < SHORTEST {
        return Vec::new();
    }
    let mut forms = vec![value.to_vec()];
    // Encoders differ in what they leave alone: everything but letters and digits; RFC 3986's
    // unreserved `-._~` (Python, Rust's url); also `!*'()` (JavaScript's encodeURIComponent).
    use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};
    const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    const COMPONENT: &AsciiSet = &UNRESERVED
        .remove(b'!')
        .remove(b'*')
        .remove(b'\'')
        .remove(b'(')
        .remove(b')');
    for set in [NON_ALPHANUMERIC, UNRESERVED, COMPONENT] {
        let url = percent_encode(value, set).to_string().into_bytes();
        if !forms.contains(&url) {
            forms.push(url);
        }
    }
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::URL_SAFE,
    ] {
        forms.push(engine.encode(value).into_bytes());
        for offset in 0..3usize {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(value);
            let encoded = engine.encode(&shifted);
            let encoded = encoded.trim_end_matches('=').as_bytes();
            // Characters fully inside the value's bits: from ceil(8*offset/6) up to
            // floor(8*(offset+len)/6).
            let start = (8 * offset).div_ceil(6);
            let end = (8 * (offset + value.len())) / 6;
            if end > start && end <= encoded.len() {
                forms.push(encoded[start..end].to_vec());
            }
        }
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn masked(masker: &Masker, text: &str) -> String {
        String::from_utf8(masker.apply(text.as_bytes())).expect("utf-8")
    }

    #[test]
    fn plain_url_encoded_and_base64_forms_are_masked() {
        let secret = "hunter2/s3cr&t";
        let masker = Masker::new([secret]);
        assert_eq!(masked(&masker, &format!("token={secret};")), "token=***;");
        let url = "hunter2%2Fs3cr%26t";
        assert_eq!(masked(&masker, &format!("?t={url}")), "?t=***");
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        assert!(!masked(&masker, &b64).contains(&b64[2..b64.len() - 2]));
        // Inside a longer encoded text, at every alignment.
        for prefix in ["", "a", "ab", "abc"] {
            let text =
                base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}!"));
            let out = masked(&masker, &text);
            assert!(out.contains(MASK), "{prefix:?}: {text} -> {out}");
        }
    }

    #[test]
    fn short_values_and_an_empty_set_mask_nothing() {
        assert!(Masker::new(["abc"]).is_empty());
        assert!(Masker::new([]).is_empty());
        assert_eq!(masked(&Masker::new(["abc"]), "abc 123"), "abc 123");
    }

    #[test]
    fn a_multi_line_value_is_masked_line_by_line() {
        let masker = Masker::new(["first-line\nsecond-line"]);
        assert_eq!(masked(&masker, "x second-line y"), "x *** y");
    }
}
