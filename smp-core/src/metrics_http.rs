//! Prometheus text over plain HTTP/1.1 (`GET /metrics`) on a local port:
//! the endpoint both servers offer beside the reference's metrics file.

use std::future::Future;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpListener;

/// Serves `text()` at `/metrics` (404 elsewhere) until `shutdown` resolves.
/// The peer address is dropped unread.
pub async fn serve<F>(listener: TcpListener, text: F, shutdown: impl Future<Output = ()>)
where
    F: Fn() -> String + Clone + Send + Sync + 'static,
{
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            _ = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(_) => continue,
            },
        };
        let text = text.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let text = text.clone();
                    async move {
                        let found =
                            req.method() == http::Method::GET && req.uri().path() == "/metrics";
                        let (status, body) = if found {
                            (http::StatusCode::OK, text())
                        } else {
                            (http::StatusCode::NOT_FOUND, "not found\n".to_string())
                        };
                        http::Response::builder()
                            .status(status)
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(Full::new(Bytes::from(body)))
                    }
                });
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
}
