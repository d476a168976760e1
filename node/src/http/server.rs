//! Accepting HTTP connections within limits. `axum::serve` gives hyper no
//! timer, so a client that opens connections and never finishes a request
//! holds each one, and its file descriptor, for ever: enough of them and the
//! node can open no file, socket or peer connection, and its peers take it
//! for dead (Raft shares this listener). Here a request's headers must arrive
//! within a deadline, idle connections close after it too, and connections
//! beyond a cap wait in the listen queue instead of taking descriptors.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// What one client may hold of the node.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// How long a request's headers may take to arrive, counted from the end
    /// of the previous request on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            // Far below the usual 1,024 descriptors a process may open, far
            // above what members, Prometheus and a few browsers need.
            max_connections: 256,
        }
    }
}

/// Serves `app` on `listener` until `shutdown`; connections open then finish
/// their request in flight.
pub async fn accept_loop(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    limits: ConnectionLimits,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => return,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
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
        tokio::spawn(async move {
            serve_connection(stream, app, shutdown, limits.header_read_timeout).await;
            drop(permit);
        });
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

    async fn start(limits: ConnectionLimits) -> (std::net::SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "ok" }));
        tokio::spawn(accept_loop(listener, app, shutdown.clone(), limits));
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
        let (addr, shutdown) = start(ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 4,
        })
        .await;
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut slow).await;
        assert!(!answer.contains("ok"), "{answer}");

        let mut idle = TcpStream::connect(addr).await.unwrap();
        read_to_close(&mut idle).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn connections_past_the_cap_are_served_once_one_closes() {
        let (addr, shutdown) = start(ConnectionLimits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 1,
        })
        .await;
        // Holds the only slot until the deadline closes it.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let mut waiting = TcpStream::connect(addr).await.unwrap();
        waiting
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let answer = read_to_close(&mut waiting).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("ok"), "{answer}");
        // The idle one was closed first: that freed the slot.
        let mut rest = Vec::new();
        assert_eq!(idle.read_to_end(&mut rest).await.unwrap(), 0);
        shutdown.cancel();
    }
}
