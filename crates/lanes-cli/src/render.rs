//! Catalog diagnostics rendered for people: file, line, column, a source snippet, a help line.

use lanes_core::{CatalogError, Diagnostic, Source};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

/// One diagnostic, dressed for miette.
#[derive(Debug)]
struct Report<'a> {
    diagnostic: &'a Diagnostic,
    source: NamedSource<String>,
}

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.diagnostic.message)
    }
}

impl std::error::Error for Report<'_> {}

impl miette::Diagnostic for Report<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        Some(Box::new(self.diagnostic.code))
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diagnostic
            .help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.source)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = &self.diagnostic.span;
        let label = LabeledSpan::new(
            Some(self.diagnostic.label.clone()),
            span.start,
            span.end.saturating_sub(span.start),
        );
        Some(Box::new(std::iter::once(label)))
    }
}

/// Every diagnostic of `error`, each with its snippet, then a count.
pub(crate) fn catalog_error(error: &CatalogError, color: bool) -> String {
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut out = String::new();
    for diagnostic in &error.diagnostics {
        let source = error
            .sources
            .iter()
            .find(|s| s.name == diagnostic.file)
            .cloned()
            .unwrap_or_else(|| Source::new(diagnostic.file.clone(), String::new()));
        let report = Report {
            diagnostic,
            source: NamedSource::new(source.name, source.text).with_language("toml"),
        };
        handler
            .render_report(&mut out, &report)
            .expect("writing to a String cannot fail");
        out.push('\n');
    }
    out.push_str(&format!("error: {error}\n"));
    out
}
