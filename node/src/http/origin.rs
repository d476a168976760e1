//! Refuses requests that a web page in the user's browser sent on its own.
//!
//! A node may run without tokens (on a loopback address, or anywhere with
//! `--demo`), and a browser lets any page it shows send a form or a
//! `no-cors` POST to such a node: without this check a page from anywhere
//! could move partitions, run jobs or write Raft commands. Two rules,
//! decided by [`check`]:
//!
//! - A request that changes something (any method but GET, HEAD and OPTIONS)
//!   carrying an `Origin` header is refused unless that origin is the node's
//!   own address as the request names it (`Host`). Browsers send `Origin` with
//!   every such request; members and command-line clients send none, and the
//!   dashboard only reads. This holds on every node.
//! - On a node listening on a loopback address, a `Host` that is not a
//!   loopback name is refused: a page whose domain was re-pointed at
//!   127.0.0.1 (DNS rebinding) passes the first rule, its origin and host
//!   agreeing, and would otherwise read and change the node as its own site.
//!   A node on another address answers to the names it is reached by.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::error_response;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    ForeignOrigin { origin: String, host: String },
    NonLoopbackHost { host: String },
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::ForeignOrigin { origin, host } => write!(
                f,
                "refused: a request from origin {origin:?} may not change node {host:?}; \
                 send it from the node's own address, or without an Origin header (as the \
                 command line and curl do)"
            ),
            Refusal::NonLoopbackHost { host } => write!(
                f,
                "refused: this node listens on a loopback address and answers only to \
                 loopback host names (localhost, 127.0.0.1, [::1]), not {host:?}"
            ),
        }
    }
}

/// Whether a request may go on; `loopback` is whether the node listens on a
/// loopback address.
pub fn check(
    method: &Method,
    host: Option<&str>,
    origin: Option<&str>,
    loopback: bool,
) -> Result<(), Refusal> {
    if loopback
        && let Some(host) = host
        && !is_loopback_host(host)
    {
        return Err(Refusal::NonLoopbackHost {
            host: host.to_string(),
        });
    }
    let changes_state = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if changes_state && let Some(origin) = origin {
        let same = host.is_some_and(|host| origin_authority(origin).eq_ignore_ascii_case(host));
        if !same {
            return Err(Refusal::ForeignOrigin {
                origin: origin.to_string(),
                host: host.unwrap_or_default().to_string(),
            });
        }
    }
    Ok(())
}

/// `scheme://authority` to `authority`; an opaque origin (`null`) keeps its
/// text, which matches no host.
fn origin_authority(origin: &str) -> &str {
    origin.split_once("://").map_or(origin, |(_, rest)| rest)
}

/// `localhost`, a name under `.localhost`, or a loopback IP, with or without
/// a port.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:8080
        match rest.split_once(']') {
            Some((address, _)) => address,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The middleware applying [`check`]; its state is whether the node listens
/// on a loopback address.
pub async fn refuse_foreign(
    State(loopback): State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let verdict = {
        let headers = request.headers();
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|value| value.to_str().unwrap_or("\u{fffd}"))
        };
        check(
            request.method(),
            text(header::HOST),
            text(header::ORIGIN),
            loopback,
        )
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            // Not a warning: any client could fill the log with them, and the
            // answer already says why.
            tracing::debug!(method = %request.method(), uri = %request.uri(), reason = %refusal, "http request refused");
            error_response(StatusCode::FORBIDDEN, refusal)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POST: Method = Method::POST;
    const GET: Method = Method::GET;

    #[test]
    fn clients_without_an_origin_pass() {
        assert_eq!(check(&POST, Some("127.0.0.1:8080"), None, true), Ok(()));
        assert_eq!(check(&POST, None, None, true), Ok(()));
    }

    #[test]
    fn the_nodes_own_pages_may_change_it() {
        let own = check(
            &POST,
            Some("127.0.0.1:8080"),
            Some("http://127.0.0.1:8080"),
            true,
        );
        assert_eq!(own, Ok(()));
        let named = check(
            &Method::DELETE,
            Some("LocalHost:8080"),
            Some("http://localhost:8080"),
            true,
        );
        assert_eq!(named, Ok(()));
    }

    #[test]
    fn another_sites_page_may_read_nothing_changed_and_change_nothing() {
        let foreign = check(
            &POST,
            Some("127.0.0.1:8080"),
            Some("https://evil.example"),
            true,
        );
        assert!(matches!(foreign, Err(Refusal::ForeignOrigin { .. })));
        let other_port = check(
            &POST,
            Some("127.0.0.1:8080"),
            Some("http://127.0.0.1:9090"),
            true,
        );
        assert!(matches!(other_port, Err(Refusal::ForeignOrigin { .. })));
        let opaque = check(&POST, Some("127.0.0.1:8080"), Some("null"), true);
        assert!(matches!(opaque, Err(Refusal::ForeignOrigin { .. })));
        // Reading carries no risk the browser does not already guard.
        let read = check(
            &GET,
            Some("127.0.0.1:8080"),
            Some("https://evil.example"),
            true,
        );
        assert_eq!(read, Ok(()));
    }

    #[test]
    fn a_node_on_another_address_answers_to_any_name_and_refuses_foreign_changes() {
        let named = Some("streamreel.internal:8080");
        assert_eq!(check(&GET, named, None, false), Ok(()));
        let own = check(
            &POST,
            named,
            Some("https://streamreel.internal:8080"),
            false,
        );
        assert_eq!(own, Ok(()));
        let foreign = check(&POST, named, Some("https://evil.example"), false);
        assert!(matches!(foreign, Err(Refusal::ForeignOrigin { .. })));
    }

    #[test]
    fn a_loopback_node_answers_only_to_loopback_names() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "127.1.2.3:1",
            "localhost",
            "localhost.:8080",
            "node1.localhost:8080",
            "[::1]",
            "[::1]:8080",
        ] {
            assert_eq!(check(&GET, Some(host), None, true), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.5:8080",
            "[::2]:8080",
            "[::1",
            "localhostx",
        ] {
            let refused = check(&GET, Some(host), None, true);
            assert!(
                matches!(refused, Err(Refusal::NonLoopbackHost { .. })),
                "{host}"
            );
        }
        // A rebound domain's origin and host agree; the host rule stops it.
        let rebound = check(
            &POST,
            Some("evil.example:8080"),
            Some("http://evil.example:8080"),
            true,
        );
        assert!(matches!(rebound, Err(Refusal::NonLoopbackHost { .. })));
    }
}
