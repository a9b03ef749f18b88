//! A request head as it arrives, counted before hyper parses it: where it ends, whether it grew
//! past the limits, and whether a write is hyper's own answer to a head it could not parse.
//!
//! Pure: bytes in, a verdict out. It parses nothing but line ends; hyper parses the head.

/// What the bytes fed so far make of a request head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scanned {
    /// The head goes on.
    Partial,
    /// The head ended inside this chunk; what follows belongs to the body.
    Complete,
    /// The head is longer than the byte limit.
    TooLarge,
    /// The head has more lines than the header limit allows.
    TooManyHeaders,
}

/// Counts one request head: its bytes, its lines, and the empty line that ends it.
#[derive(Clone, Debug, Default)]
pub(crate) struct HeadScan {
    bytes: usize,
    lines: usize,
    /// A byte other than CR or LF was seen: empty lines before the request line do not end it.
    started: bool,
    /// The last byte was a line feed (possibly followed by one CR).
    after_lf: bool,
}

impl HeadScan {
    /// Feeds the next bytes of a head; `max_bytes` counts everything from its first byte,
    /// `max_headers` the header lines after the request line.
    pub(crate) fn feed(&mut self, chunk: &[u8], max_bytes: usize, max_headers: usize) -> Scanned {
        for &b in chunk {
            self.bytes += 1;
            if self.bytes > max_bytes {
                return Scanned::TooLarge;
            }
            match b {
                b'\n' if self.started && self.after_lf => return Scanned::Complete,
                b'\n' if self.started => {
                    self.after_lf = true;
                    self.lines += 1;
                    // The request line is the first line; the rest are header lines.
                    if self.lines > max_headers + 1 {
                        return Scanned::TooManyHeaders;
                    }
                }
                b'\n' => {}
                // `\r\n\r\n` and `\n\n` both end a head, as in hyper's parser.
                b'\r' => {}
                _ => {
                    self.started = true;
                    self.after_lf = false;
                }
            }
        }
        Scanned::Partial
    }
}

/// The status of hyper's own answer to a head it refused (`400`, `414`, `431`: a bare head with
/// `content-length: 0` and `connection: close`), so that it can be answered in JSON instead.
pub(crate) fn automatic_refusal(write: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(write).ok()?;
    let status = text.strip_prefix("HTTP/1.1 4")?;
    let lower = text.to_ascii_lowercase();
    let bare = text.len() < 512
        && text.ends_with("\r\n\r\n")
        && lower.contains("\r\ncontent-length: 0\r\n")
        && lower.contains("\r\nconnection: close\r\n");
    let code: u16 = status.get(..2)?.parse().ok()?;
    bare.then_some(400 + code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Scanned {
        let mut head = HeadScan::default();
        for chunk in chunks {
            match head.feed(chunk, 64, 3) {
                Scanned::Partial => {}
                other => return other,
            }
        }
        Scanned::Partial
    }

    #[test]
    fn a_head_ends_at_its_empty_line_even_split_across_reads() {
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]),
            Scanned::Complete
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\nHost: x\r", b"\n\r", b"\nbody"]),
            Scanned::Complete
        );
        assert_eq!(scan(&[b"GET / HTTP/1.1\nHost: x\n\n"]), Scanned::Complete);
        assert_eq!(scan(&[b"GET / HTTP/1.1\r\nHost: x\r\n"]), Scanned::Partial);
    }

    #[test]
    fn empty_lines_before_the_request_line_do_not_end_it_but_count() {
        assert_eq!(scan(&[b"\r\n\r\nGET / HTTP/1.1\r\n"]), Scanned::Partial);
        assert_eq!(scan(&[&[b'\n'; 65]]), Scanned::TooLarge);
    }

    #[test]
    fn a_head_over_its_limits_is_refused() {
        assert_eq!(scan(&[&[b'a'; 65]]), Scanned::TooLarge);
        assert_eq!(scan(&[&[b'a'; 64]]), Scanned::Partial);
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\na:1\r\nb:2\r\nc:3\r\n\r\n"]),
            Scanned::Complete
        );
        assert_eq!(
            scan(&[b"GET / HTTP/1.1\r\na:1\r\nb:2\r\nc:3\r\nd:4\r\n\r\n"]),
            Scanned::TooManyHeaders
        );
    }

    #[test]
    fn only_hypers_bare_refusals_are_recognized() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                     content-length: 0\r\ndate: Mon, 07 Dec 2026 22:46:22 GMT\r\n\r\n";
        assert_eq!(automatic_refusal(bare), Some(431));
        let bad = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_refusal(bad), Some(400));
        let ours = b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\n\
                     content-length: 20\r\n\r\n{\"error\": {}}";
        assert_eq!(automatic_refusal(ours), None);
        let ok = b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(automatic_refusal(ok), None);
    }
}
