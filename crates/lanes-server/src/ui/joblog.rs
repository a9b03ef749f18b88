//! A job log (the format `lanes-agent`'s `joblog.rs` writes) read back into what the log page
//! shows: numbered lines, each step a section that folds, and for a step that failed the line a
//! reader should jump to. Pure.

use super::ansi::{self, Span};

/// One line of the log, numbered from 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Line {
    pub(crate) n: usize,
    /// The `[   0.004s]` stamp of a step's output line, shown apart.
    pub(crate) stamp: String,
    pub(crate) spans: Vec<Span>,
}

/// A part of the log: lines outside any step, or one step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Block {
    /// `step-3` for the third step's section; empty for lines outside steps.
    pub(crate) id: String,
    pub(crate) is_step: bool,
    /// `step 1/3 compile`.
    pub(crate) title: String,
    /// `passed in 1.2s`; empty while the step runs.
    pub(crate) outcome: String,
    /// `running`, `passed`, `failed`, `cached`, `skipped`, `cancelled`, `timed-out`,
    /// `oom-killed`.
    pub(crate) status: &'static str,
    pub(crate) open: bool,
    pub(crate) lines: Vec<Line>,
    /// The line to jump to in a failed step: its first line that reads like an error, else its
    /// last line.
    pub(crate) first_error: Option<usize>,
}

impl Block {
    fn plain() -> Block {
        Block {
            id: String::new(),
            is_step: false,
            title: String::new(),
            outcome: String::new(),
            status: "",
            open: true,
            lines: Vec::new(),
            first_error: None,
        }
    }
}

/// What an outcome text says about the step.
pub(crate) fn outcome_status(outcome: &str) -> Option<&'static str> {
    [
        ("passed", "passed"),
        ("failed", "failed"),
        ("timed out", "timed-out"),
        ("oom-killed", "oom-killed"),
        ("cancelled", "cancelled"),
        ("cached", "cached"),
        ("skipped", "skipped"),
    ]
    .into_iter()
    .find(|(word, _)| outcome.starts_with(word))
    .map(|(_, status)| status)
}

/// True for a line that reads like the start of an error.
pub(crate) fn looks_like_error(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "error",
        "panicked",
        "fail",
        "fatal",
        "exception",
        "traceback",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// The blocks of a log's text. `text` holds whole lines only.
pub(crate) fn blocks(text: &str) -> Vec<Block> {
    let mut out: Vec<Block> = Vec::new();
    let mut style = ansi::Style::default();
    let mut open_step: Option<usize> = None;
    // A requeued job's log holds every attempt, each with its own step 1: ids stay unique.
    let mut ids: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut unique = |id: String| {
        let n = ids.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 { id } else { format!("{id}-{n}") }
    };
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        if let Some(rest) = raw.strip_prefix("== step ") {
            let (number, name) = rest.split_once(' ').unwrap_or((rest, ""));
            // The closing line of the open step: its number and name, then `: OUTCOME`.
            if let Some(at) = open_step {
                let block = &mut out[at];
                let heading = format!("step {number} ");
                let closing = block
                    .title
                    .strip_prefix(&heading)
                    .and_then(|title| name.strip_prefix(title))
                    .and_then(|tail| tail.strip_prefix(": "));
                if let Some(outcome) = closing {
                    close(block, outcome);
                    push_line(block, n, raw, &mut style);
                    open_step = None;
                    continue;
                }
            }
            // A step that never started has its closing line only.
            let standalone = name
                .rsplit_once(": ")
                .filter(|(_, outcome)| outcome_status(outcome).is_some());
            let mut block = Block::plain();
            block.is_step = true;
            block.id = unique(format!(
                "step-{}",
                number.split('/').next().unwrap_or(number)
            ));
            match standalone {
                Some((title, outcome)) => {
                    block.title = format!("step {number} {title}");
                    push_line(&mut block, n, raw, &mut style);
                    close(&mut block, outcome);
                    out.push(block);
                }
                None => {
                    block.title = format!("step {number} {name}");
                    block.status = "running";
                    push_line(&mut block, n, raw, &mut style);
                    out.push(block);
                    open_step = Some(out.len() - 1);
                }
            }
            continue;
        }
        let at = match open_step {
            Some(at) => at,
            None => {
                if out.last().is_none_or(|b| b.is_step) {
                    out.push(Block::plain());
                }
                out.len() - 1
            }
        };
        push_line(&mut out[at], n, raw, &mut style);
    }
    out
}

fn close(block: &mut Block, outcome: &str) {
    block.outcome = outcome.to_owned();
    block.status = outcome_status(outcome).unwrap_or("passed");
    // Steps that went well fold; the ones a reader came for stay open.
    block.open = !matches!(block.status, "passed" | "cached" | "skipped");
    if matches!(block.status, "failed" | "timed-out" | "oom-killed") {
        let output: Vec<&Line> = block.lines.iter().filter(|l| !l.stamp.is_empty()).collect();
        block.first_error = output
            .iter()
            .find(|l| l.spans.iter().any(|s| looks_like_error(&s.text)))
            .or(output.last())
            .map(|l| l.n);
    }
}

fn push_line(block: &mut Block, n: usize, raw: &str, style: &mut ansi::Style) {
    // Step output lines start with the executor's `[   0.004s] ` stamp; lanes' own lines never
    // start with `[`.
    let (stamp, rest) = match raw.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((inside, rest)) if inside.trim_end().ends_with('s') => (format!("[{inside}]"), rest),
        _ => (String::new(), raw),
    };
    block.lines.push(Line {
        n,
        stamp,
        spans: ansi::line(rest, style),
    });
}

/// The end of the last whole line in `bytes` (a live tail continues from there).
pub(crate) fn whole_lines(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "== lane build at 1a2b3c4d5e6f: 3 steps\n\
-- lane directory written: 12 files, 0.1 MB in 4 ms\n\
== step 1/3 compile\n\
[   0.004s] compiling lanes\n\
== step 1/3 compile: passed in 1.2s\n\
== step 2/3 test\n\
[   0.010s] running 12 tests\n\
[   0.020s] error: no credentials\n\
[   0.030s] more\n\
== step 2/3 test: failed with exit code 1 after 0.1s\n\
== step 3/3 deploy: skipped\n\
== lane build: failed in 1.4s (2 run, 0 cached)\n";

    #[test]
    fn steps_become_sections_that_fold_when_they_passed() {
        let b = blocks(LOG);
        let shape: Vec<(bool, &str, &str, bool)> = b
            .iter()
            .map(|b| (b.is_step, b.title.as_str(), b.status, b.open))
            .collect();
        assert_eq!(
            shape,
            [
                (false, "", "", true),
                (true, "step 1/3 compile", "passed", false),
                (true, "step 2/3 test", "failed", true),
                (true, "step 3/3 deploy", "skipped", false),
                (false, "", "", true),
            ]
        );
        assert_eq!(b[1].lines[1].stamp, "[   0.004s]");
        assert_eq!(b[1].lines[1].spans[0].text, "compiling lanes");
        assert_eq!(b[2].outcome, "failed with exit code 1 after 0.1s");
    }

    #[test]
    fn a_failed_step_points_at_its_first_error_line() {
        let b = blocks(LOG);
        assert_eq!(b[2].first_error, Some(8));
        assert_eq!(b[1].first_error, None);
    }

    #[test]
    fn every_attempt_of_a_requeued_job_has_its_own_section_ids() {
        let log = "== step 1/1 a\n== step 1/1 a: cancelled after 1.0s\n\
                   == lanes: attempt 2 starts here\n== step 1/1 a\n== step 1/1 a: passed in 1.0s\n";
        let ids: Vec<String> = blocks(log)
            .into_iter()
            .filter(|b| b.is_step)
            .map(|b| b.id)
            .collect();
        assert_eq!(ids, ["step-1", "step-1-2"]);
    }

    #[test]
    fn a_running_step_stays_open() {
        let b = blocks("== step 1/1 sleep\n[   0.001s] started\n");
        assert_eq!(b[0].status, "running");
        assert!(b[0].open);
        assert_eq!(whole_lines(b"a\nb"), 2);
    }
}
