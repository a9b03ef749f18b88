//! The stylesheet, the script and the favicons, compiled into the binary: the UI needs no files
//! next to it and nothing from the network.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../assets/lanes.css");
const JS: &str = include_str!("../../assets/lanes.js");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// `GET /-/assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "lanes.css" => ("text/css; charset=utf-8", CSS),
        "lanes.js" => ("text/javascript; charset=utf-8", JS),
        _ => return super::not_found(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            // The binary is the version: a restart may bring a new one, so keep it short.
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The colour and the mark of each status the favicon shows.
fn mark(status: &str) -> Option<(&'static str, &'static str)> {
    // The marks are drawn paths, so the icon says the status without its colour too.
    const CHECK: &str = "M9 16.5l4.5 4.5L23 11.5";
    const CROSS: &str = "M11 11l10 10M21 11L11 21";
    const DOT: &str = "M16 12a4 4 0 1 0 0.01 0";
    const BAR: &str = "M10 16h12";
    Some(match status {
        "passed" => ("#1a7f37", CHECK),
        "failed" | "error" | "timed-out" | "oom-killed" => ("#cf222e", CROSS),
        "running" => ("#bf8700", DOT),
        "pending" | "queued" | "leased" => ("#6e7781", DOT),
        "cancelled" | "skipped" => ("#57606a", BAR),
        "none" => ("#0969da", BAR),
        _ => return None,
    })
}

/// `GET /-/favicon/{status}.svg`.
pub(crate) async fn favicon(Path(file): Path<String>) -> Response {
    let Some((colour, path)) = file.strip_suffix(".svg").and_then(mark) else {
        return super::not_found();
    };
    let svg = FAVICON.replace("COLOUR", colour).replace("MARK", path);
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        svg,
    )
        .into_response()
}
