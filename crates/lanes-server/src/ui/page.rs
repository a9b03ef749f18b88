//! A page: the layout every page shares, the live part inside it that `/-/events` re-renders,
//! and the HTML error pages.
//!
//! Each page renders its live part from its own fragment template, then the layout around it.
//! The layout inserts the fragment unescaped: it is askama's own output, in which every value
//! from the store or the request was already escaped. Nothing else is ever inserted unescaped.

use crate::error::ForgeError;
use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// What the layout needs to know about the request and the page.
#[derive(Clone, Debug)]
pub(crate) struct Base {
    /// The `<title>`, before ` · lanes`.
    pub(crate) title: String,
    /// The status the favicon shows: `passed`, `failed`, `running`, `pending`, … or `none`.
    pub(crate) status: &'static str,
    /// Which navigation entry is this page: `home`, `agents`, `groups`, `cache` or empty.
    pub(crate) nav: &'static str,
    pub(crate) signed_in: bool,
    /// The page's own path and query, which `/-/events` re-renders; empty for a page that does
    /// not update live.
    pub(crate) page: String,
}

impl Base {
    pub(crate) fn new(viewer: Viewer, nav: &'static str, page: String) -> Base {
        Base {
            title: String::new(),
            status: "none",
            nav,
            signed_in: viewer.signed_in,
            page,
        }
    }

    /// The URL of the page's live updates.
    pub(crate) fn events(&self) -> String {
        if self.page.is_empty() {
            String::new()
        } else {
            format!(
                "/-/events?page={}",
                super::view::encode_component(&self.page)
            )
        }
    }
}

/// Who is looking: a signed-in user (a session or the admin token) may act.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Viewer {
    pub(crate) signed_in: bool,
}

/// A rendered page: the live fragment apart, for `/-/events`.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub(crate) base: Base,
    pub(crate) live: String,
    /// HTML after the live part that live updates leave alone (the lane page's log).
    pub(crate) extra: String,
}

impl Rendered {
    /// The whole page.
    pub(crate) fn page(&self) -> UiResult<String> {
        Ok(Layout {
            base: &self.base,
            live: &self.live,
            extra: &self.extra,
        }
        .render()?)
    }
}

impl IntoResponse for Rendered {
    fn into_response(self) -> Response {
        match self.page() {
            Ok(html) => Html(html).into_response(),
            Err(e) => e.into_response(),
        }
    }
}

#[derive(Template)]
#[template(path = "layout.html")]
struct Layout<'a> {
    base: &'a Base,
    live: &'a str,
    extra: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorFragment<'a> {
    status: u16,
    reason: &'a str,
    message: &'a str,
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInFragment<'a> {
    next: &'a str,
    message: &'a str,
}

/// A page that could not be shown: its status and why, as an HTML page.
#[derive(Clone, Debug)]
pub(crate) struct UiError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// 401: show the sign-in form, coming back to this path.
    pub(crate) sign_in: Option<String>,
}

impl UiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
            sign_in: None,
        }
    }

    pub(crate) fn not_found(message: impl Into<String>) -> UiError {
        UiError::new(StatusCode::NOT_FOUND, message)
    }

    /// 401 with the sign-in form, which comes back to `next` once signed in.
    pub(crate) fn sign_in(next: &str, message: &str) -> UiError {
        UiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.to_owned(),
            sign_in: Some(next.to_owned()),
        }
    }
}

impl From<ForgeError> for UiError {
    fn from(e: ForgeError) -> UiError {
        let (status, message) = e.reply();
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        UiError::new(status, message)
    }
}

impl From<lanes_store::StoreError> for UiError {
    fn from(e: lanes_store::StoreError) -> UiError {
        ForgeError::from(e).into()
    }
}

impl From<askama::Error> for UiError {
    fn from(e: askama::Error) -> UiError {
        tracing::error!("a page failed to render: {e}");
        UiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the page failed to render: {e}"),
        )
    }
}

impl UiError {
    /// The error as a page inside the layout.
    pub(crate) fn page(&self, signed_in: bool) -> String {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        let (title, live) = match &self.sign_in {
            Some(next) => (
                "Sign in".to_owned(),
                SignInFragment {
                    next,
                    message: &self.message,
                }
                .render(),
            ),
            None => (
                format!("{} {reason}", self.status.as_u16()),
                ErrorFragment {
                    status: self.status.as_u16(),
                    reason,
                    message: &self.message,
                }
                .render(),
            ),
        };
        let base = Base {
            title,
            status: "none",
            nav: "",
            signed_in,
            page: String::new(),
        };
        let live = live.unwrap_or_else(|_| String::from("<p>error</p>"));
        Layout {
            base: &base,
            live: &live,
            extra: "",
        }
        .render()
        .unwrap_or_else(|_| format!("<!doctype html><title>{}</title>", self.status.as_u16()))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let html = self.page(false);
        let mut response = (
            self.status,
            [(header::CACHE_CONTROL, "no-store")],
            Html(html),
        )
            .into_response();
        // Handlers do not know who is signed in; the access check, which does, renders the
        // page again for a signed-in user (`Sign out` rather than `Sign in`).
        response.extensions_mut().insert(self);
        response
    }
}

/// `response` again for a signed-in user, if it is an error page.
pub(crate) fn for_signed_in(response: Response) -> Response {
    match response.extensions().get::<UiError>() {
        Some(e) => (
            e.status,
            [(header::CACHE_CONTROL, "no-store")],
            Html(e.page(true)),
        )
            .into_response(),
        None => response,
    }
}

/// The result of a page handler.
pub(crate) type UiResult<T> = Result<T, UiError>;

/// The sign-in page on its own (`GET /sign-in`).
pub(crate) fn sign_in_page(next: &str, message: &str) -> Response {
    let e = UiError {
        status: StatusCode::OK,
        message: message.to_owned(),
        sign_in: Some(next.to_owned()),
    };
    Html(e.page(false)).into_response()
}
