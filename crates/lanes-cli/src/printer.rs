//! All user-facing text goes through here: stdout for results, stderr for problems.

use std::io::{self, IsTerminal, Write};

#[derive(Debug)]
pub(crate) struct Printer {
    /// Whether stderr is a terminal (colors for diagnostics).
    pub(crate) color: bool,
}

impl Printer {
    pub(crate) fn new() -> Printer {
        Printer {
            color: io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Write a result to stdout.
    pub(crate) fn out(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        out.write_all(text.as_bytes())?;
        out.flush()
    }

    /// Write a JSON value to stdout, on one line.
    pub(crate) fn json(&self, value: &impl serde::Serialize) -> io::Result<()> {
        let mut text = serde_json::to_string(value).map_err(io::Error::other)?;
        text.push('\n');
        self.out(&text)
    }

    /// Write a problem to stderr.
    pub(crate) fn err(&self, text: &str) {
        // Nothing sensible is left to do if stderr itself is gone.
        let _ = io::stderr().lock().write_all(text.as_bytes());
    }
}
