//! The `lanes` binary.

mod api;
mod args;
mod cache_dir;
mod client;
mod commands;
mod error;
mod forge;
mod printer;
mod progress;
mod render;
mod sse;
mod workspace;

use clap::Parser;
use error::CliError;
use printer::Printer;
use std::process::ExitCode;

fn main() -> ExitCode {
    // `lanes __sandbox ...` sets a step's sandbox up and execs the step: first, while the
    // process is still single-threaded.
    let raw: Vec<std::ffi::OsString> = std::env::args_os().take(2).collect();
    if raw.get(1).is_some_and(|a| a == lanes_exec::sandbox::ENTRY) {
        let args: Vec<std::ffi::OsString> = std::env::args_os().skip(2).collect();
        let code = lanes_exec::sandbox::enter(&args);
        return ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = args::Cli::parse();
    let printer = Printer::new();
    // Absolute, so errors name the directory rather than `.`.
    let given = cli.directory.clone().unwrap_or_else(|| ".".into());
    let dir = std::path::absolute(&given).unwrap_or(given);
    let result = match &cli.command {
        args::Command::Check(a) => commands::check::run(&dir, a, &printer),
        args::Command::Select(a) => commands::select::run(&dir, a, &printer),
        args::Command::Fingerprint(a) => commands::fingerprint::run(&dir, a, &printer),
        args::Command::Run(a) => commands::run::run(&dir, a, &printer),
        args::Command::Explain(a) => commands::explain::run(&dir, a, &printer),
        args::Command::Doctor(a) => commands::doctor::run(&dir, a, &printer),
        args::Command::Cache(c) => commands::cache::run(c, &printer),
        args::Command::Status(a) => commands::status::run(&dir, a, &printer),
        args::Command::Wait(a) => commands::wait::run(&dir, a, &printer),
        args::Command::Logs(a) => commands::logs::run(&dir, a, &printer),
        args::Command::Rerun(a) => commands::rerun::run(&dir, a, &printer),
        args::Command::Cancel(a) => commands::cancel::run(&dir, a, &printer),
        args::Command::Hook(c) => commands::hook::run(&dir, c, &printer),
        args::Command::Serve(a) => commands::serve::run(a, &printer),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            report(&printer, &error);
            ExitCode::from(error.exit_code())
        }
    }
}

fn report(printer: &Printer, error: &CliError) {
    if let CliError::Catalog(catalog) = error {
        printer.err(&render::catalog_error(catalog, printer.color));
        return;
    }
    let mut text = format!("error: {error}\n");
    if let Some(help) = error.help() {
        text.push_str(&format!("  help: {help}\n"));
    }
    printer.err(&text);
}
