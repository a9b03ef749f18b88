//! Server-sent events, as the forge's log stream sends them: bytes in, whole events out.
//!
//! The subset of the format lanes needs: `event:` and `data:` fields (several `data:` lines
//! join with `\n`), comments (`:`), and lines ending in `\n` or `\r\n`. `id:` and `retry:` are
//! read and ignored: lanes resumes a stream from the log offset it printed, not from an event id.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; `message` when the event had none.
    pub(crate) name: String,
    pub(crate) data: String,
}

/// Turns the chunks of a response body, split anywhere, into events.
#[derive(Debug, Default)]
pub(crate) struct Parser {
    line: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feed the next bytes of the stream; the events they complete.
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                self.line.push(byte);
                continue;
            }
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            // A line boundary is never inside a UTF-8 sequence, so each line decodes alone.
            let line = String::from_utf8_lossy(&self.line).into_owned();
            self.line.clear();
            if let Some(event) = self.line_done(&line) {
                events.push(event);
            }
        }
        events
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = self.name.take();
            let data = self.data.take()?;
            return Some(Event {
                name: name.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_split_anywhere_come_out_whole() {
        let stream = "event: log\ndata: {\"offset\":0,\"text\":\"h\u{e9}\"}\n\n: keep-alive\n\n\
                      event: end\r\ndata: {\"status\":\"passed\"}\r\n\r\n";
        let whole = Parser::default().push(stream.as_bytes());
        let expected = vec![
            event("log", "{\"offset\":0,\"text\":\"h\u{e9}\"}"),
            event("end", "{\"status\":\"passed\"}"),
        ];
        assert_eq!(whole, expected);
        // Byte by byte, the é split across two pushes.
        let mut parser = Parser::default();
        let mut pieces = Vec::new();
        for byte in stream.as_bytes() {
            pieces.extend(parser.push(std::slice::from_ref(byte)));
        }
        assert_eq!(pieces, expected);
    }

    #[test]
    fn data_lines_join_and_an_event_without_a_name_is_a_message() {
        let events = Parser::default().push(b"data: a\ndata:b\nid: 7\n\n");
        assert_eq!(events, vec![event("message", "a\nb")]);
    }

    #[test]
    fn an_event_is_only_dispatched_at_its_blank_line() {
        let mut parser = Parser::default();
        assert!(parser.push(b"event: log\ndata: x\n").is_empty());
        assert_eq!(parser.push(b"\n"), vec![event("log", "x")]);
    }
}
