//! What the forge's bench binaries share: a minimal HTTP/1.1 client over `std::net::TcpStream`
//! (so the client's own cost stays small and visible), a reader of server-sent events, and the
//! statistics the tables print, and the generated database of passed runs (`runs.rs`).
//!
//! The client is blocking and speaks only what `lanes serve` answers: `Content-Length` or
//! chunked bodies, keep-alive unless the server closes.

#![allow(
    dead_code,
    reason = "each bench binary includes this module and uses part of it"
)]

pub(crate) mod runs;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The error of a bench binary.
pub(crate) type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// How long a read waits before the bench gives up (a broken server fails the bench instead of
/// hanging it; not a timing target).
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    pub(crate) fn json(&self) -> BenchResult<serde_json::Value> {
        serde_json::from_slice(&self.body).map_err(|e| {
            format!(
                "not JSON ({e}): {} {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
            .into()
        })
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One HTTP/1.1 connection, kept alive across requests.
#[derive(Debug)]
pub(crate) struct Conn {
    addr: String,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Connects to `addr` (`host:port`), with Nagle off as any HTTP client does.
    pub(crate) fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(PATIENCE))?;
        Ok(Conn {
            addr: addr.to_owned(),
            reader: BufReader::with_capacity(64 * 1024, stream),
        })
    }

    /// Sends one request and reads its whole response.
    pub(crate) fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<Response> {
        self.send(method, path, token, body, &[])?;
        let (status, headers) = self.head()?;
        let body = self.body(&headers)?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    fn send(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&[u8]>,
        extra: &[(&str, &str)],
    ) -> io::Result<()> {
        let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        if let Some(token) = token {
            out.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (k, v) in extra {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        let body = body.unwrap_or_default();
        if method != "GET" || !body.is_empty() {
            out.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            ));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        self.reader.get_mut().write_all(&bytes)
    }

    /// The status line and the headers.
    fn head(&mut self) -> io::Result<(u16, Vec<(String, String)>)> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("not an HTTP status line: {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        Ok((status, headers))
    }

    fn body(&mut self, headers: &[(String, String)]) -> io::Result<Vec<u8>> {
        if let Some(len) = header(headers, "content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            let mut body = vec![0; len];
            self.reader.read_exact(&mut body)?;
            return Ok(body);
        }
        if header(headers, "transfer-encoding").is_some_and(|t| t.contains("chunked")) {
            let mut body = Vec::new();
            while let Some(chunk) = self.chunk()? {
                body.extend_from_slice(&chunk);
            }
            return Ok(body);
        }
        let mut body = Vec::new();
        self.reader.read_to_end(&mut body)?;
        Ok(body)
    }

    /// The next chunk of a chunked body; `None` after the last.
    fn chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        let mut chunk = vec![0; size];
        self.reader.read_exact(&mut chunk)?;
        line.clear();
        self.reader.read_line(&mut line)?;
        if size == 0 {
            return Ok(None);
        }
        Ok(Some(chunk))
    }

    /// Opens a server-sent event stream at `path`: the connection is the stream from now on.
    pub(crate) fn events(mut self, path: &str, token: Option<&str>) -> io::Result<Events> {
        self.send("GET", path, token, None, &[("Accept", "text/event-stream")])?;
        let (status, headers) = self.head()?;
        if status != 200 {
            let body = self.body(&headers)?;
            return Err(bad(format!(
                "event stream {path}: {status} {}",
                String::from_utf8_lossy(&body)
            )));
        }
        let chunked = header(&headers, "transfer-encoding").is_some_and(|t| t.contains("chunked"));
        Ok(Events {
            conn: self,
            chunked,
            pending: Vec::new(),
        })
    }
}

fn bad(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A server-sent event stream.
#[derive(Debug)]
pub(crate) struct Events {
    conn: Conn,
    chunked: bool,
    pending: Vec<u8>,
}

/// One server-sent event.
#[derive(Debug)]
pub(crate) struct Event {
    pub(crate) name: String,
    pub(crate) data: String,
}

impl Events {
    /// The next event; `None` when the stream ended.
    pub(crate) fn next_event(&mut self) -> io::Result<Option<Event>> {
        loop {
            if let Some(end) = find(&self.pending, b"\n\n") {
                let raw: Vec<u8> = self.pending.drain(..end + 2).collect();
                let text = String::from_utf8_lossy(&raw);
                let mut event = Event {
                    name: "message".to_owned(),
                    data: String::new(),
                };
                for line in text.lines() {
                    if let Some(name) = line.strip_prefix("event:") {
                        event.name = name.trim().to_owned();
                    } else if let Some(data) = line.strip_prefix("data:") {
                        if !event.data.is_empty() {
                            event.data.push('\n');
                        }
                        event.data.push_str(data.strip_prefix(' ').unwrap_or(data));
                    }
                }
                if event.data.is_empty() && text.lines().all(|l| l.starts_with(':')) {
                    continue; // a keep-alive comment
                }
                return Ok(Some(event));
            }
            let more = if self.chunked {
                self.conn.chunk()?
            } else {
                let mut buf = vec![0; 16 * 1024];
                let n = self.conn.reader.read(&mut buf)?;
                buf.truncate(n);
                (n > 0).then_some(buf)
            };
            match more {
                Some(bytes) => self.pending.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A small deterministic generator (xorshift), so every bench run sees the same workload.
#[derive(Debug)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Sorts `times` and returns its quantile `q` (0.5 for the median), nearest rank.
pub(crate) fn quantile(times: &mut [Duration], q: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    times.sort();
    let at = ((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1;
    times[at]
}

/// The median of `values`.
pub(crate) fn median_f64(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Milliseconds with three decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

/// A number from the environment, if set and valid.
pub(crate) fn env_number(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}
