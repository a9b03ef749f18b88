//! `lanes serve`: the forge.

use crate::args::ServeArgs;
use crate::error::CliError;
use crate::printer::Printer;

pub(crate) fn run(_args: &ServeArgs, _printer: &Printer) -> Result<u8, CliError> {
    Err(CliError::usage(
        "lanes serve is not wired yet".to_owned(),
        None::<String>,
    ))
}
