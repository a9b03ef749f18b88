//! What `lanes run` shows while it runs: on a terminal, a live line per running lane under a
//! progress bar for the run; otherwise plain, timestamped lines that read well in a CI log.
//! Lines that matter afterwards (a step's result, a warning, a failure's log tail) are printed
//! the same way in both modes, above the live lines on a terminal.

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub(crate) struct Progress {
    started: Instant,
    live: Option<Live>,
}

#[derive(Debug)]
struct Live {
    multi: MultiProgress,
    overall: ProgressBar,
    lanes: HashMap<usize, ProgressBar>,
    width: usize,
}

impl Progress {
    /// Live output when stderr is a terminal, plain lines otherwise. `total` is the number of
    /// lanes that will run; `width` the longest lane name.
    pub(crate) fn new(total: usize, width: usize) -> Progress {
        let terminal =
            std::io::stderr().is_terminal() && std::env::var_os("TERM").is_none_or(|t| t != "dumb");
        let live = terminal.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total as u64));
            overall.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} lanes  {elapsed:>4}  {msg}")
                    .expect("a valid template")
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(200));
            Live {
                multi,
                overall,
                lanes: HashMap::new(),
                width,
            }
        });
        Progress {
            started: Instant::now(),
            live,
        }
    }

    /// A line that stays: above the live lines on a terminal, timestamped otherwise.
    pub(crate) fn line(&self, text: &str) {
        match &self.live {
            Some(live) => {
                // Progress on a terminal that went away has nobody to show it to.
                let _ = live.multi.println(text);
            }
            None => {
                let t = self.started.elapsed();
                let stamp = format!("[{:>4}.{}s] ", t.as_secs(), t.subsec_millis() / 100);
                let mut out = String::new();
                for line in text.lines() {
                    out.push_str(&stamp);
                    out.push_str(line);
                    out.push('\n');
                }
                // As the printer: nothing sensible is left to do if stderr itself is gone.
                let _ = std::io::stderr().lock().write_all(out.as_bytes());
            }
        }
    }

    /// Lines printed as they are, without a timestamp (a log tail, streamed output).
    pub(crate) fn raw(&self, text: &str) {
        match &self.live {
            // As above: a terminal or stderr gone has nobody to show it to.
            Some(live) => {
                let _ = live.multi.println(text.trim_end_matches('\n'));
            }
            None => {
                let _ = std::io::stderr().lock().write_all(text.as_bytes());
            }
        }
    }

    /// Lane `id` started, or moved to another step.
    pub(crate) fn lane_status(&mut self, id: usize, name: &str, status: &str) {
        let Some(live) = &mut self.live else { return };
        let width = live.width;
        let bar = live.lanes.entry(id).or_insert_with(|| {
            let bar = live.multi.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(&format!(
                    "  {{spinner}} {{prefix:{width}}}  {{elapsed:>4}}  {{msg}}"
                ))
                .expect("a valid template"),
            );
            bar.set_prefix(name.to_owned());
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        bar.set_message(status.to_owned());
    }

    /// Lane `id` is done: its live line goes, the run's bar moves.
    pub(crate) fn lane_done(&mut self, id: usize) {
        if let Some(live) = &mut self.live {
            if let Some(bar) = live.lanes.remove(&id) {
                bar.finish_and_clear();
                live.multi.remove(&bar);
            }
            live.overall.inc(1);
        }
    }

    /// A note on the run's bar (such as "cancelling").
    pub(crate) fn note(&self, text: &str) {
        if let Some(live) = &self.live {
            live.overall.set_message(text.to_owned());
        }
    }

    /// Remove every live line.
    pub(crate) fn finish(&mut self) {
        if let Some(live) = self.live.take() {
            for bar in live.lanes.values() {
                bar.finish_and_clear();
            }
            live.overall.finish_and_clear();
            // As above: a terminal gone has nothing to clear.
            let _ = live.multi.clear();
        }
    }
}
