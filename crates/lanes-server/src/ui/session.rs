//! Sign-in for the browser: the admin token entered once becomes a session cookie.
//!
//! The cookie holds a random session id, never the token; the server keeps only the id's
//! BLAKE3 hash, in memory, so a restart signs everyone out (docs/ui.md). Who may read or act is
//! the API's rule: reads need a session (or `Authorization: Bearer`) unless `--public-read`,
//! actions always do. Actions that come with the cookie must also come from this site: the
//! cookie is `SameSite=Strict`, and [`same_origin`] checks `Sec-Fetch-Site` or `Origin` too, for
//! browsers that send a cookie where they should not.

use axum::http::{HeaderMap, header};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The cookie's name.
pub(crate) const COOKIE: &str = "lanes_session";

/// How long a session lasts after sign-in.
const LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// At most this many sessions are kept; signing in past it forgets the oldest.
const MOST: usize = 10_000;

/// The signed-in sessions, by the hash of their id.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    inner: Arc<Mutex<HashMap<[u8; 32], Instant>>>,
}

impl Sessions {
    /// A new session: its id, for the cookie.
    pub(crate) fn create(&self) -> Result<String, lanes_store::StoreError> {
        let id = lanes_store::token::generate_token()?;
        let mut map = self.lock();
        let now = Instant::now();
        map.retain(|_, created| now.duration_since(*created) < LIFETIME);
        if map.len() >= MOST
            && let Some(oldest) = map.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(lanes_store::token::hash_token(&id), now);
        Ok(id)
    }

    /// True when `headers` carry the cookie of a live session.
    pub fn signed_in(&self, headers: &HeaderMap) -> bool {
        let Some(id) = cookie(headers, COOKIE) else {
            return false;
        };
        let hash = lanes_store::token::hash_token(&id);
        let map = self.lock();
        map.get(&hash)
            .is_some_and(|created| created.elapsed() < LIFETIME)
    }

    /// Forgets the session of `headers`' cookie.
    pub(crate) fn end(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.lock().remove(&lanes_store::token::hash_token(&id));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        // A panic while holding the map cannot leave it half-written: every change is one call.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `Set-Cookie` value for a new session.
pub(crate) fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub(crate) fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The value of cookie `name`.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// The bearer token of `Authorization`, if any. The scheme is case-insensitive (RFC 7235):
/// `Bearer`, `bearer` and `BEARER` are the same.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// False for a request a browser says comes from another site: `Sec-Fetch-Site` other than
/// `same-origin` or `none` (typed in, a bookmark), or an `Origin` whose host is not `Host`.
/// A request with neither header is not from a browser's form, so it carries no ambient cookie
/// worth forging.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return matches!(site, "same-origin" | "none");
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

/// Where to go after signing in: a path on this site, else the home page. Never another host,
/// so the form cannot be used to send someone elsewhere.
///
/// Only printable ASCII without spaces passes: browsers drop tabs and line breaks from a
/// `Location` (`/\t/evil.example` would become `//evil.example`, another host), and a byte a
/// header cannot carry would fail the redirect. A line break is refused outright
/// ([`BadNext`]): it can only be an attempt to add a header.
pub(crate) fn safe_next(next: Option<&str>) -> Result<String, BadNext> {
    let Some(n) = next else {
        return Ok("/".to_owned());
    };
    if n.contains(['\r', '\n']) {
        return Err(BadNext);
    }
    let printable = n.bytes().all(|b| b.is_ascii_graphic());
    let path = n.starts_with('/') && !n.starts_with("//") && !n.contains('\\');
    Ok(if printable && path {
        n.to_owned()
    } else {
        "/".to_owned()
    })
}

/// A `next=` with a line break in it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`next` must be a path on this forge, without line breaks")]
pub(crate) struct BadNext;

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn a_session_is_known_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let id = sessions.create().expect("random bytes");
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("other=1; {COOKIE}={id}")).expect("a header"),
        );
        assert!(sessions.signed_in(&h));
        assert!(!sessions.signed_in(&headers(&[("cookie", "lanes_session=lanes_00")])));
        sessions.end(&h);
        assert!(!sessions.signed_in(&h));
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        assert!(same_origin(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(!same_origin(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(same_origin(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(!same_origin(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(same_origin(&HeaderMap::new()));
    }

    #[test]
    fn next_stays_on_this_site() {
        let next = |n| safe_next(n).expect("no line break");
        assert_eq!(next(Some("/app/runs/3")), "/app/runs/3");
        assert_eq!(next(Some("//evil.example/")), "/");
        assert_eq!(next(Some("https://evil.example/")), "/");
        assert_eq!(next(Some("/\t/evil.example")), "/");
        assert_eq!(next(Some("/\\evil.example")), "/");
        assert_eq!(next(Some("/caf\u{e9}")), "/");
        assert_eq!(next(None), "/");
        assert_eq!(safe_next(Some("/\r\nSet-Cookie: a=b")), Err(BadNext));
        assert_eq!(safe_next(Some("/\n")), Err(BadNext));
    }
}
