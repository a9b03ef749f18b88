//! `lanes logs`: a lane's job log from the forge, printed as it is, or followed while it runs.

use crate::api::{LogChunk, LogEnd, StreamError};
use crate::args::LogsArgs;
use crate::client::{Client, block_on};
use crate::error::{CliError, exit};
use crate::forge::{Forge, Local, lane_job};
use crate::printer::Printer;
use crate::sse;
use futures_util::StreamExt as _;
use std::path::Path;
use std::time::Duration;

/// Wait this long before reconnecting a log stream that dropped.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// Reconnections in a row that bring nothing new before `--follow` gives up (about 30 s).
const RECONNECT_ATTEMPTS: u32 = 60;

pub(crate) fn run(dir: &Path, args: &LogsArgs, printer: &Printer) -> Result<u8, CliError> {
    let local = Local::discover(dir)?;
    block_on(async {
        let forge = Forge::connect(&args.forge, &local).await?;
        let run = forge.chosen_run(Some(&args.branch), args.run).await?;
        let job = lane_job(&run, &args.lane)?;
        if args.follow {
            follow(&forge.client, job.id, printer).await
        } else {
            print_log(&forge.client, job.id, printer).await
        }
    })?
}

/// Page through `GET /jobs/{id}/log` until the acknowledged length is reached.
async fn print_log(client: &Client, job: u64, printer: &Printer) -> Result<u8, CliError> {
    let id = job.to_string();
    let mut offset: u64 = 0;
    let mut text = Utf8Chunks::default();
    loop {
        let mut url = client.url(["jobs", id.as_str(), "log"]);
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string());
        let response = client.get(url).await?;
        let header = |name: &str| -> Option<u64> {
            response
                .headers()
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse()
                .ok()
        };
        let served = header("x-log-offset").unwrap_or(offset);
        let length = header("x-log-length");
        let body = response.bytes().await.map_err(|e| client.broken(&e))?;
        printer.out(&text.push(&body))?;
        offset = served + body.len() as u64;
        if body.is_empty() || length.is_none_or(|length| offset >= length) {
            break;
        }
    }
    printer.out(&text.finish())?;
    Ok(exit::SUCCESS)
}

/// Read `GET /jobs/{id}/log/stream` until its `end` event, reconnecting from the last offset
/// printed when it drops. 0 if the job passed, 1 if not.
async fn follow(client: &Client, job: u64, printer: &Printer) -> Result<u8, CliError> {
    let id = job.to_string();
    let mut offset: u64 = 0;
    let mut fruitless: u32 = 0;
    loop {
        let mut url = client.url(["jobs", id.as_str(), "log", "stream"]);
        url.query_pairs_mut()
            .append_pair("offset", &offset.to_string());
        let resumed_at = offset;
        let mut progressed = false;
        match client.get(url).await {
            Ok(response) => {
                let mut parser = sse::Parser::default();
                let mut body = response.bytes_stream();
                while let Some(Ok(bytes)) = body.next().await {
                    for event in parser.push(&bytes) {
                        match event.name.as_str() {
                            "log" => {
                                let chunk: LogChunk = read_event(client, "log", &event.data)?;
                                let text = unseen(&chunk, resumed_at);
                                if !text.is_empty() {
                                    printer.out(&text)?;
                                    progressed = true;
                                }
                                // Exact for UTF-8 logs; the event carries no raw length for
                                // bytes the forge replaced with U+FFFD.
                                offset = offset.max(chunk.offset + chunk.text.len() as u64);
                            }
                            "end" => {
                                let end: LogEnd = read_event(client, "end", &event.data)?;
                                return Ok(if end.status == lanes_core::job::JobState::Passed {
                                    exit::SUCCESS
                                } else {
                                    exit::FAILED
                                });
                            }
                            "error" => {
                                let error: StreamError = read_event(client, "error", &event.data)?;
                                // The forge's own reading of its log failed.
                                return Err(CliError::Forge {
                                    class: lanes_core::ErrorClass::Environment,
                                    code: None,
                                    message: format!(
                                        "the forge could not stream the log of job {job}: {}",
                                        error.message
                                    ),
                                    help: None,
                                });
                            }
                            _ => {}
                        }
                    }
                }
            }
            Err(e @ CliError::Unreachable { .. }) => {
                if fruitless + 1 >= RECONNECT_ATTEMPTS {
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        fruitless = if progressed { 0 } else { fruitless + 1 };
        if fruitless >= RECONNECT_ATTEMPTS {
            return Err(CliError::Unreachable {
                message: format!(
                    "the log stream of job {job} keeps ending before the job does (at byte {offset})"
                ),
                help: "read what there is with `lanes logs` without --follow".to_owned(),
            });
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

fn read_event<T: serde::de::DeserializeOwned>(
    client: &Client,
    name: &str,
    data: &str,
) -> Result<T, CliError> {
    serde_json::from_str(data).map_err(|e| client.unreadable(&format!("a `{name}` event: {e}")))
}

/// The part of a log event after `resumed_at`, the offset the stream was opened at: a forge
/// that resends from earlier does not print a line twice. `offset` in the event is where its
/// text starts.
fn unseen(chunk: &LogChunk, resumed_at: u64) -> String {
    if chunk.offset >= resumed_at {
        return chunk.text.clone();
    }
    let skip = usize::try_from(resumed_at - chunk.offset).unwrap_or(usize::MAX);
    match chunk.text.get(skip..) {
        Some(rest) => rest.to_owned(),
        None => String::from_utf8_lossy(chunk.text.as_bytes().get(skip..).unwrap_or_default())
            .into_owned(),
    }
}

/// Log bytes as text, chunk by chunk: a UTF-8 sequence cut by a page boundary is kept for the
/// next chunk, invalid bytes become U+FFFD.
#[derive(Debug, Default)]
struct Utf8Chunks {
    pending: Vec<u8>,
}

impl Utf8Chunks {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(text) => {
                    out.push_str(text);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// What is left at the end of the log: an unfinished sequence, as U+FFFD.
    fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_pages_is_printed_whole() {
        let bytes = "é€".as_bytes();
        let mut text = Utf8Chunks::default();
        assert_eq!(text.push(&bytes[..1]), "");
        assert_eq!(text.push(&bytes[1..3]), "é");
        assert_eq!(text.push(&bytes[3..]), "€");
        assert_eq!(text.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut text = Utf8Chunks::default();
        assert_eq!(text.push(b"a\xffb\xe2\x82"), "a\u{FFFD}b");
        assert_eq!(text.finish(), "\u{FFFD}");
    }

    fn chunk(offset: u64, text: &str) -> LogChunk {
        LogChunk {
            offset,
            text: text.to_owned(),
        }
    }

    #[test]
    fn a_resent_chunk_prints_only_what_is_new() {
        assert_eq!(unseen(&chunk(0, "hello\n"), 0), "hello\n");
        assert_eq!(unseen(&chunk(6, "world\n"), 0), "world\n");
        assert_eq!(unseen(&chunk(0, "hello\n"), 6), "");
        assert_eq!(unseen(&chunk(3, "lo\nworld\n"), 6), "world\n");
    }
}
