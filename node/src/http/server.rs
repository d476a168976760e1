//! Accepting HTTP connections with a deadline for requests' headers.
//! `axum::serve` gives hyper no timer, so a client that opens connections and
//! never finishes a request holds each one, and its file descriptor, for
//! ever: enough of them and the node can open no file, socket or peer
//! connection, and its peers take it for dead (Raft shares this listener).
//! Here a request's headers must arrive within [`HEADER_READ_TIMEOUT`], and a
//! kept-alive connection idle that long is closed. There is deliberately no
//! cap on connections: members' Raft traffic shares the listener, and a cap
//! anyone can fill would cut the member off sooner than the descriptor limit.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// How long a request's headers may take to arrive, counted from the end of
/// the previous request on a kept-alive connection.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown`; connections open then finish
/// their request in flight.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) {
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Mostly out of descriptors: a pause lets some close
                    // rather than spin on the same error.
                    tracing::warn!(error = %e, "cannot accept an http connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(serve_connection(stream, app, shutdown, header_read_timeout));
    }
}

async fn serve_connection(
    stream: TcpStream,
    app: Router,
    shutdown: CancellationToken,
    header_read_timeout: Duration,
) {
    // HTTP/1 only: members, Prometheus and browsers speak it over plain
    // HTTP, and its header deadline is the one hyper enforces. Told so, hyper
    // starts at once; left to guess the version it would first wait, with no
    // deadline, for the client's first bytes. (No route upgrades connections.)
    let mut builder = Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn start(header_read_timeout: Duration) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(accept_loop(
            listener,
            app,
            shutdown.clone(),
            header_read_timeout,
        ));
        (addr, shutdown)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_to_close(stream: &mut TcpStream) -> String {
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the server closed the connection within 10 s")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_request_whose_headers_never_end_is_cut_off() {
        let (addr, shutdown) = start(Duration::from_millis(200)).await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow).await;
        assert!(!answer.contains("ok"), "{answer}");

        // One that never sends a byte, and one idle after its answer.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_to_close(&mut idle).await, "");
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut kept).await;
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"),
            "{answer}"
        );
        shutdown.cancel();
    }
}
