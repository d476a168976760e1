//! Refuses requests that a web page in the user's browser sent on its own to
//! a node listening on a loopback address.
//!
//! Such a node may run without tokens, and a browser lets any page it shows
//! send a form or a `no-cors` POST to `127.0.0.1`: without this check a page
//! from anywhere could move partitions, run jobs or write Raft commands.
//! (A node on any other address must have tokens, which a cross-site request
//! cannot carry.) Two rules, decided by [`check`]:
//!
//! - A `Host` that is not a loopback name is refused: a page whose domain was
//!   re-pointed at 127.0.0.1 (DNS rebinding) would otherwise read and change
//!   the node as if it were its own site.
//! - A request that changes something (any method but GET, HEAD and OPTIONS)
//!   carrying an `Origin` header is refused unless that origin is the node's
//!   own address as the request names it (`Host`). Browsers send `Origin` with
//!   every such request; members and command-line clients send none.

use std::net::IpAddr;

use axum::extract::Request;
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
                 send it from the node's own dashboard or without an Origin header"
            ),
            Refusal::NonLoopbackHost { host } => write!(
                f,
                "refused: this node listens on a loopback address and answers only to \
                 loopback host names (localhost, 127.0.0.1, [::1]), not {host:?}"
            ),
        }
    }
}

/// Whether a request to a node on a loopback address may go on.
pub fn check(method: &Method, host: Option<&str>, origin: Option<&str>) -> Result<(), Refusal> {
    if let Some(host) = host
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

/// The middleware applying [`check`].
pub async fn refuse_foreign(request: Request, next: Next) -> Response {
    let verdict = {
        let headers = request.headers();
        let text = |name: header::HeaderName| {
            headers
                .get(name)
                .map(|value| value.to_str().unwrap_or("\u{fffd}"))
        };
        check(request.method(), text(header::HOST), text(header::ORIGIN))
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(refusal) => {
            tracing::warn!(method = %request.method(), uri = %request.uri(), reason = %refusal, "http request refused");
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
        assert_eq!(check(&POST, Some("127.0.0.1:8080"), None), Ok(()));
        assert_eq!(check(&POST, None, None), Ok(()));
    }

    #[test]
    fn the_nodes_own_pages_may_change_it() {
        let own = check(&POST, Some("127.0.0.1:8080"), Some("http://127.0.0.1:8080"));
        assert_eq!(own, Ok(()));
        let named = check(
            &Method::DELETE,
            Some("LocalHost:8080"),
            Some("http://localhost:8080"),
        );
        assert_eq!(named, Ok(()));
    }

    #[test]
    fn another_sites_page_may_read_nothing_changed_and_change_nothing() {
        let foreign = check(&POST, Some("127.0.0.1:8080"), Some("https://evil.example"));
        assert!(matches!(foreign, Err(Refusal::ForeignOrigin { .. })));
        let other_port = check(&POST, Some("127.0.0.1:8080"), Some("http://127.0.0.1:9090"));
        assert!(matches!(other_port, Err(Refusal::ForeignOrigin { .. })));
        let opaque = check(&POST, Some("127.0.0.1:8080"), Some("null"));
        assert!(matches!(opaque, Err(Refusal::ForeignOrigin { .. })));
        // Reading carries no risk the browser does not already guard.
        let read = check(&GET, Some("127.0.0.1:8080"), Some("https://evil.example"));
        assert_eq!(read, Ok(()));
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
            assert_eq!(check(&GET, Some(host), None), Ok(()), "{host}");
        }
        for host in [
            "evil.example:8080",
            "10.0.0.5:8080",
            "[::2]:8080",
            "[::1",
            "localhostx",
        ] {
            let refused = check(&GET, Some(host), None);
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
        );
        assert!(matches!(rebound, Err(Refusal::NonLoopbackHost { .. })));
    }
}
