//! The HTTP client of a running forge (`lanes serve`): its address, its token, and the ways a
//! request fails, turned into [`CliError`]s with something to do about them.
//!
//! It speaks the routes of docs/api.md and returns their JSON; what a command makes of it lives
//! in the command. Only `http://` addresses: reqwest is built without TLS to keep the binary
//! lean.

use crate::error::CliError;
use lanes_core::ErrorClass;
use reqwest::{Method, Response, StatusCode, Url};
use serde::Deserialize;
use std::future::Future;
use std::time::Duration;

/// Where the forge answers when neither `--server` nor `LANES_SERVER` says otherwise (the
/// default `--listen` of `lanes serve`).
pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// A connection attempt that takes longer than this is a forge that cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs a command's requests to completion on a current-thread runtime: the CLI makes one
/// request at a time, so one thread is all it needs.
pub(crate) fn block_on<F: Future>(future: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::environment(
                format!("failed to start the async runtime: {e}"),
                None::<String>,
            )
        })?;
    Ok(runtime.block_on(future))
}

/// The forge's address: `--server` (or `LANES_SERVER`, which clap folds into it), else
/// [`DEFAULT_SERVER`]. An empty value counts as not given.
pub(crate) fn server_url(given: Option<&str>) -> Result<Url, CliError> {
    let text = given
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVER);
    let invalid = |why: &str| {
        let help = if text.contains("://") {
            "write it as http://HOST:PORT, e.g. http://127.0.0.1:8080".to_owned()
        } else {
            format!("write it with its scheme: http://{text}")
        };
        CliError::usage(format!("invalid forge address `{text}`: {why}"), help)
    };
    let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "http" => {}
        "https" => {
            return Err(CliError::usage(
                format!("cannot reach `{text}`: https is not supported yet"),
                "lanes is built without TLS; reach the forge over http://, through an SSH tunnel \
                 or a local proxy that terminates TLS"
                    .to_owned(),
            ));
        }
        other if text.contains("://") => {
            return Err(invalid(&format!("unsupported scheme `{other}`")));
        }
        // `localhost:8080` parses as the scheme `localhost`.
        _ => return Err(invalid("no scheme")),
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a forge address has no query or fragment"));
    }
    Ok(url)
}

/// The forge's JSON error body: `{"error": {"code", "message"}}`.
#[derive(Debug, Deserialize)]
struct ApiErrorBody {
    error: ApiError,
}

#[derive(Debug, Deserialize)]
struct ApiError {
    code: String,
    message: String,
}

/// One forge, one token.
#[derive(Clone, Debug)]
pub(crate) struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

impl Client {
    /// A client for the forge at `server` (see [`server_url`]) sending `LANES_TOKEN`, if set.
    pub(crate) fn from_env(server: Option<&str>) -> Result<Client, CliError> {
        let token = std::env::var("LANES_TOKEN")
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty());
        Client::new(server_url(server)?, token, None)
    }

    /// A client for `base`; `timeout` bounds each whole request (the hook's, which must never
    /// hold a push up), `None` leaves streams open as long as the forge sends.
    pub(crate) fn new(
        base: Url,
        token: Option<String>,
        timeout: Option<Duration>,
    ) -> Result<Client, CliError> {
        if let Some(token) = &token
            && reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).is_err()
        {
            return Err(CliError::usage(
                "LANES_TOKEN holds characters that cannot be sent in a header",
                "set it to the admin token `lanes serve` printed when it first started".to_owned(),
            ));
        }
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("lanes/", env!("CARGO_PKG_VERSION")));
        if let Some(timeout) = timeout {
            builder = builder.timeout(timeout);
        }
        let http = builder.build().map_err(|e| {
            CliError::environment(
                format!("failed to set up the HTTP client: {e}"),
                None::<String>,
            )
        })?;
        Ok(Client { http, base, token })
    }

    /// The forge's address as the user gave it, for messages.
    pub(crate) fn server(&self) -> &str {
        self.base.as_str().trim_end_matches('/')
    }

    /// `/api/v1/<segments...>` on the forge, each segment percent-encoded (so a branch split on
    /// `/` keeps its slashes and nothing else in it can change the route).
    pub(crate) fn url<'a>(&self, segments: impl IntoIterator<Item = &'a str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .expect("server_url only accepts http URLs, which have a path");
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    /// GET `url` and parse its JSON.
    pub(crate) async fn get_json(&self, url: Url) -> Result<serde_json::Value, CliError> {
        let response = self.send(Method::GET, url, true).await?;
        self.json(response).await
    }

    /// POST to `url` with the token, no body, and parse the JSON answer.
    pub(crate) async fn post_json(&self, url: Url) -> Result<serde_json::Value, CliError> {
        let response = self.send(Method::POST, url, true).await?;
        self.json(response).await
    }

    /// POST to `url` without the token (the hook's anonymous route) and parse the JSON answer.
    pub(crate) async fn post_anonymous(&self, url: Url) -> Result<serde_json::Value, CliError> {
        let response = self.send(Method::POST, url, false).await?;
        self.json(response).await
    }

    /// GET `url` with the token; the response once its status is a success, for the caller to
    /// read its headers and body (logs, event streams).
    pub(crate) async fn get(&self, url: Url) -> Result<Response, CliError> {
        self.send(Method::GET, url, true).await
    }

    async fn send(&self, method: Method, url: Url, auth: bool) -> Result<Response, CliError> {
        let mut request = self.http.request(method, url);
        if auth && let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.map_err(|e| self.unreachable(&e))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        Err(api_error(status, &body, self.token.is_some()))
    }

    async fn json(&self, response: Response) -> Result<serde_json::Value, CliError> {
        let bytes = response.bytes().await.map_err(|e| self.broken(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| self.unreadable(&e.to_string()))
    }

    /// The connection could not be made (or timed out).
    pub(crate) fn unreachable(&self, error: &reqwest::Error) -> CliError {
        CliError::Unreachable {
            message: format!(
                "cannot reach the forge at {}: {}",
                self.server(),
                innermost(error)
            ),
            help: "start it with `lanes serve`, or point LANES_SERVER (or --server) at it"
                .to_owned(),
        }
    }

    /// The connection broke while a response was being read.
    pub(crate) fn broken(&self, error: &reqwest::Error) -> CliError {
        CliError::Unreachable {
            message: format!(
                "the connection to the forge at {} broke: {}",
                self.server(),
                innermost(error)
            ),
            help: "run the command again once the forge is back".to_owned(),
        }
    }

    /// The forge answered something that is not the document docs/api.md promises: a forge of
    /// another version, or not a forge at all. Either way not the user's input, and nothing a
    /// retry mends: a bug, until the versions match.
    pub(crate) fn unreadable(&self, why: &str) -> CliError {
        CliError::Forge {
            class: ErrorClass::Bug,
            code: None,
            message: format!(
                "the forge at {} sent a response lanes cannot read: {why}",
                self.server()
            ),
            help: Some(
                "check that LANES_SERVER points at a `lanes serve` of the same version as this \
                 lanes"
                    .to_owned(),
            ),
        }
    }
}

/// The error of a failed request: the forge's own message when it sent its JSON error, and a
/// help line about `LANES_TOKEN` for the two authentication answers.
fn api_error(status: StatusCode, body: &[u8], sent_token: bool) -> CliError {
    // A body that is not the API's error is no error to pass on: the status says it all.
    let parsed = serde_json::from_slice::<ApiErrorBody>(body).ok();
    let message = match &parsed {
        Some(body) => body.error.message.clone(),
        None => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                format!("the forge answered {status}")
            } else {
                let snippet: String = text.chars().take(200).collect();
                format!("the forge answered {status}: {snippet}")
            }
        }
    };
    let code = parsed.as_ref().map(|b| b.error.code.clone());
    let help = match (status, code.as_deref()) {
        (StatusCode::UNAUTHORIZED, _) | (_, Some("unauthorized")) => Some(if sent_token {
            "the forge did not take LANES_TOKEN; set it to the admin token `lanes serve` printed \
             when it first started"
                .to_owned()
        } else {
            "set LANES_TOKEN to the admin token `lanes serve` printed when it first started"
                .to_owned()
        }),
        (StatusCode::FORBIDDEN, _) | (_, Some("forbidden")) => Some(
            "LANES_TOKEN is not a token this forge knows; set it to the admin token `lanes serve` \
             printed when it first started"
                .to_owned(),
        ),
        _ => None,
    };
    CliError::Forge {
        class: answer_class(status, code.as_deref()),
        code,
        message,
        help,
    }
}

/// Whose problem a forge's error answer is (docs/api.md#errors): a 4xx is the request's; the
/// forge's own 500 (`internal`) is a bug; any other 5xx (the forge's `unavailable`, a proxy's
/// 502 or 504, a 500 that is not the forge's JSON) is the environment; another status is not
/// what the API answers, as for a body lanes cannot read.
fn answer_class(status: StatusCode, code: Option<&str>) -> ErrorClass {
    if status.is_client_error() {
        ErrorClass::Input
    } else if status == StatusCode::INTERNAL_SERVER_ERROR && code == Some("internal") {
        ErrorClass::Bug
    } else if status.is_server_error() {
        ErrorClass::Environment
    } else {
        ErrorClass::Bug
    }
}

/// The most specific cause of a reqwest error ("Connection refused (os error 111)"), rather than
/// its outer "error sending request for url (...)".
fn innermost(error: &reqwest::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    if error.is_timeout() && !cause.to_string().contains("timed out") {
        return format!("timed out ({cause})");
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(error: &CliError) -> (String, Option<String>) {
        (error.to_string(), error.help())
    }

    #[test]
    fn the_default_address_is_the_default_listen_of_lanes_serve() {
        let url = server_url(None).expect("default parses");
        assert_eq!(url.as_str(), "http://127.0.0.1:8080/");
        let empty = server_url(Some("  ")).expect("empty counts as not given");
        assert_eq!(empty, url);
    }

    #[test]
    fn https_is_refused_with_a_reason() {
        let error = server_url(Some("https://ci.example.com")).expect_err("no TLS");
        let (text, help) = message(&error);
        assert_eq!(
            text,
            "cannot reach `https://ci.example.com`: https is not supported yet"
        );
        assert!(help.expect("help").contains("built without TLS"));
    }

    #[test]
    fn an_address_without_a_scheme_gets_a_corrected_suggestion() {
        let error = server_url(Some("localhost:8080")).expect_err("no scheme");
        let (text, help) = message(&error);
        assert_eq!(text, "invalid forge address `localhost:8080`: no scheme");
        assert_eq!(
            help.as_deref(),
            Some("write it with its scheme: http://localhost:8080")
        );
        let error = server_url(Some("ftp://host")).expect_err("not http");
        assert_eq!(
            error.to_string(),
            "invalid forge address `ftp://host`: unsupported scheme `ftp`"
        );
    }

    #[test]
    fn routes_are_built_under_api_v1_with_each_segment_encoded() {
        let client = Client::new(
            server_url(Some("http://forge:9000/ci/")).expect("valid"),
            None,
            None,
        )
        .expect("client");
        let url = client.url(
            ["repos", "app", "branches"]
                .into_iter()
                .chain("feature/a#b".split('/')),
        );
        assert_eq!(
            url.as_str(),
            "http://forge:9000/ci/api/v1/repos/app/branches/feature/a%23b"
        );
        let root = Client::new(server_url(None).expect("valid"), None, None).expect("client");
        assert_eq!(
            root.url(["repos"]).as_str(),
            "http://127.0.0.1:8080/api/v1/repos"
        );
    }

    #[test]
    fn the_forge_error_message_is_the_error_and_auth_failures_say_what_to_do() {
        let body = br#"{"error": {"code": "not-found", "message": "no run #7 in repository app"}}"#;
        let (text, help) = message(&api_error(StatusCode::NOT_FOUND, body, false));
        assert_eq!(text, "no run #7 in repository app");
        assert_eq!(help, None);

        let body = br#"{"error": {"code": "unauthorized", "message": "a token is required"}}"#;
        let (text, help) = message(&api_error(StatusCode::UNAUTHORIZED, body, false));
        assert_eq!(text, "a token is required");
        assert!(help.expect("help").starts_with("set LANES_TOKEN"));

        let body = br#"{"error": {"code": "forbidden", "message": "invalid token"}}"#;
        let (_, help) = message(&api_error(StatusCode::FORBIDDEN, body, true));
        assert!(
            help.expect("help")
                .starts_with("LANES_TOKEN is not a token this forge knows")
        );

        let (text, _) = message(&api_error(
            StatusCode::BAD_GATEWAY,
            b"upstream down\n",
            false,
        ));
        assert_eq!(text, "the forge answered 502 Bad Gateway: upstream down");
    }

    #[test]
    fn a_forge_answer_is_the_request_s_the_environment_s_or_a_bug() {
        let json = |code: &str| format!(r#"{{"error": {{"code": "{code}", "message": "m"}}}}"#);
        let class = |status, body: &str| api_error(status, body.as_bytes(), true).class();
        assert_eq!(
            class(StatusCode::NOT_FOUND, &json("not-found")),
            ErrorClass::Input
        );
        assert_eq!(class(StatusCode::FORBIDDEN, ""), ErrorClass::Input);
        assert_eq!(
            class(StatusCode::SERVICE_UNAVAILABLE, &json("unavailable")),
            ErrorClass::Environment
        );
        assert_eq!(
            class(StatusCode::BAD_GATEWAY, "<html>"),
            ErrorClass::Environment
        );
        assert_eq!(
            class(StatusCode::INTERNAL_SERVER_ERROR, "oops"),
            ErrorClass::Environment
        );
        assert_eq!(
            class(StatusCode::INTERNAL_SERVER_ERROR, &json("internal")),
            ErrorClass::Bug
        );
        assert_eq!(class(StatusCode::NOT_MODIFIED, ""), ErrorClass::Bug);
    }
}
