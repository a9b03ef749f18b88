//! `lanes cache stats` and `lanes cache gc`.

use crate::args::CacheCommand;
use crate::cache_dir::cache_dir;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use lanes_cache::{GcPolicy, LocalStore, human_size};
use serde::Serialize;
use std::fmt::Write as _;
use std::time::SystemTime;

#[derive(Debug, Serialize)]
struct Stats {
    dir: String,
    #[serde(flatten)]
    stats: lanes_cache::CacheStats,
}

pub(crate) fn run(command: &CacheCommand, printer: &Printer) -> Result<u8, CliError> {
    let dir = cache_dir()?;
    let store = LocalStore::open(&dir).map_err(|e| {
        CliError::environment(format!("cannot open the cache: {e}"), None::<String>)
    })?;
    let failed = |e: lanes_cache::CacheError| {
        CliError::environment(format!("cache error: {e}"), None::<String>)
    };
    match command {
        CacheCommand::Stats { json } => {
            let stats = store.stats().map_err(failed)?;
            if *json {
                printer.json(&Stats {
                    dir: dir.display().to_string(),
                    stats,
                })?;
                return Ok(exit::SUCCESS);
            }
            let rate = (stats.hits * 100)
                .checked_div(stats.hits + stats.misses)
                .map(|r| format!(", hit rate {r}%"))
                .unwrap_or_default();
            let mut text = format!("cache {}\n", dir.display());
            let _ = writeln!(
                text,
                "  entries  {}, {}",
                count(stats.actions, "step result"),
                count(stats.blobs, "blob")
            );
            let _ = writeln!(text, "  size     {}", human_size(stats.bytes));
            let _ = writeln!(
                text,
                "  runs     {} (hits {}, misses {}{rate})",
                stats.runs, stats.hits, stats.misses
            );
            let _ = writeln!(
                text,
                "  saved    {:.1}s of step time",
                stats.saved_ms as f64 / 1000.0
            );
            printer.out(&text)?;
        }
        CacheCommand::Gc {
            max_size,
            max_age,
            json,
        } => {
            let max_size = max_size.as_deref().map(parse_size).transpose()?;
            let max_age = max_age
                .as_deref()
                .map(|text| {
                    lanes_core::parse::parse_duration(text).ok_or_else(|| {
                        CliError::usage(
                            format!("invalid duration `{text}`"),
                            "use a number and a unit: 90s, 30m, 12h, 7d".to_owned(),
                        )
                    })
                })
                .transpose()?;
            if max_size.is_none() && max_age.is_none() {
                return Err(CliError::usage(
                    "nothing to do: give --max-size, --max-age or both",
                    "for example `lanes cache gc --max-size 10G --max-age 14d`".to_owned(),
                ));
            }
            let report = store
                .gc(GcPolicy {
                    max_size,
                    max_age,
                    now: SystemTime::now(),
                })
                .map_err(failed)?;
            if *json {
                printer.json(&report)?;
                return Ok(exit::SUCCESS);
            }
            let mut text = format!(
                "removed {} and {}, freed {}\nkept {} and {}, {}\n",
                count(report.actions_removed, "step result"),
                count(report.blobs_removed, "blob"),
                human_size(report.bytes_freed),
                count(report.actions_kept, "step result"),
                count(report.blobs_kept, "blob"),
                human_size(report.bytes_kept)
            );
            if report.protected > 0 {
                let _ = writeln!(
                    text,
                    "{} entries were kept because {} running `lanes run` may use them",
                    report.protected, report.live_runs
                );
            }
            printer.out(&text)?;
        }
    }
    Ok(exit::SUCCESS)
}

/// `123`, `500K`, `500M`, `10G`, `1T` (powers of 1024; a trailing `B` or `iB` is accepted).
fn parse_size(text: &str) -> Result<u64, CliError> {
    let invalid = || {
        CliError::usage(
            format!("invalid size `{text}`"),
            "use bytes or a number with K, M, G or T (powers of 1024): 500M, 10G".to_owned(),
        )
    };
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (number, factor) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let factor: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(invalid()),
            };
            (&t[..i], factor)
        }
        _ => (t, 1),
    };
    let number: u64 = number.trim().parse().map_err(|_| invalid())?;
    number.checked_mul(factor).ok_or_else(invalid)
}

/// `1 blob`, `3 blobs`.
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_in_powers_of_1024() {
        assert_eq!(parse_size("123").ok(), Some(123));
        assert_eq!(parse_size("500M").ok(), Some(500 << 20));
        assert_eq!(parse_size("10G").ok(), Some(10 << 30));
        assert_eq!(parse_size("2GiB").ok(), Some(2 << 30));
        assert_eq!(parse_size("0").ok(), Some(0));
        for bad in ["", "M", "10X", "-1", "1.5G"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
