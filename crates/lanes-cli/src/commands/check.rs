//! `lanes check`: validate the catalog, report every error at once.

use crate::args::CheckArgs;
use crate::error::{CliError, exit};
use crate::printer::Printer;
use crate::render;
use crate::workspace::{CATALOG_PATH, Workspace};
use lanes_core::Diagnostic;
use lanes_core::{Catalog, CatalogError, Source};
use serde::Serialize;
use std::path::Path;

/// The `--json` document. Field order is the documented order.
#[derive(Debug, Serialize)]
struct Output<'a> {
    ok: bool,
    lanes: Option<usize>,
    diagnostics: &'a [Diagnostic],
}

pub(crate) fn run(dir: &Path, args: &CheckArgs, printer: &Printer) -> Result<u8, CliError> {
    let result = match &args.manifest {
        Some(path) => parse_file(&dir.join(path), path),
        None => Workspace::open(dir, None)?.catalog(),
    };
    let outcome: Result<Catalog, CatalogError> = match result {
        Ok(catalog) => Ok(catalog),
        Err(CliError::Catalog(error)) => Err(error),
        Err(other) => return Err(other),
    };
    if args.json {
        let value = match &outcome {
            Ok(catalog) => Output {
                ok: true,
                lanes: Some(catalog.lanes.len()),
                diagnostics: &[],
            },
            Err(e) => Output {
                ok: false,
                lanes: None,
                diagnostics: &e.diagnostics,
            },
        };
        printer.json(&value)?;
    } else {
        match &outcome {
            Ok(catalog) => {
                let n = catalog.lanes.len();
                printer.out(&format!("ok: {n} lane{}\n", if n == 1 { "" } else { "s" }))?
            }
            Err(error) => printer.err(&render::catalog_error(error, printer.color)),
        }
    }
    Ok(if outcome.is_ok() {
        exit::SUCCESS
    } else {
        exit::FAILED
    })
}

/// A catalog file given by path; its pins file is read relative to the catalog's directory.
fn parse_file(full: &Path, given: &Path) -> Result<Catalog, CliError> {
    let text = std::fs::read_to_string(full).map_err(|source| CliError::Read {
        path: given.display().to_string(),
        source,
    })?;
    let root = full.parent().unwrap_or(Path::new("."));
    let mut load = |path: &str| std::fs::read_to_string(root.join(path)).map_err(|e| e.to_string());
    let name = given
        .to_str()
        .map_or(CATALOG_PATH.to_owned(), str::to_owned);
    lanes_core::parse(&Source::new(name, text), &mut load).map_err(CliError::Catalog)
}
