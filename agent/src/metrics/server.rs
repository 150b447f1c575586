//! The HTTP endpoint: `GET /metrics` (Prometheus text format) and `GET /healthz` (200
//! when both of the agent's connections answer a ping, 503 otherwise).

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long `/healthz` waits for a ping.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the endpoint cannot start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("invalid --metrics-addr {addr:?}: expected HOST:PORT, e.g. 0.0.0.0:9216")]
    BadAddress { addr: String },
    #[error("cannot serve metrics on {addr}: {source}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Checks `HOST:PORT` (`:PORT` for every interface, as Go exporters take it) and
/// listens on it; turns metrics on.
///
/// # Errors
/// A malformed address, or one that cannot be bound (in use, not local, no permission).
pub async fn bind(addr: &str) -> Result<TcpListener, MetricsError> {
    let bad = || MetricsError::BadAddress {
        addr: addr.to_string(),
    };
    let (host, port) = addr.rsplit_once(':').ok_or_else(bad)?;
    if port.parse::<u16>().is_err() {
        return Err(bad());
    }
    let bind_to = if host.is_empty() {
        format!("0.0.0.0:{port}")
    } else {
        addr.to_string()
    };
    let listener = TcpListener::bind(bind_to)
        .await
        .map_err(|source| MetricsError::Listen {
            addr: addr.to_string(),
            source,
        })?;
    super::enable();
    Ok(listener)
}

/// Serves until `shutdown`.
pub fn serve(listener: TcpListener, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    if let Ok(a) = listener.local_addr() {
        tracing::info!("serving metrics on http://{a}/metrics");
    }
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = listener.accept() => match r {
                    Ok((s, _)) => s,
                    Err(e) => {
                        tracing::warn!("metrics endpoint: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(handle);
                if let Err(e) = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await
                {
                    tracing::debug!("metrics endpoint: connection: {e}");
                }
            });
        }
    })
}

fn reply(status: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

async fn handle(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(m) = super::get() else {
        return Ok(reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "metrics are off\n".into(),
        ));
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => reply(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            m.render().await,
        ),
        (&Method::GET, "/healthz") => match health(m).await {
            Ok(()) => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            Err(why) => reply(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                format!("{why}\n"),
            ),
        },
        (_, "/metrics" | "/healthz") => reply(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "use GET\n".into(),
        ),
        _ => reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: try /metrics or /healthz\n".into(),
        ),
    })
}

async fn health(m: &super::Metrics) -> Result<(), String> {
    let Some(node) = m.node.get() else {
        return Err("not connected to the mongod yet".into());
    };
    let ping = bson::doc! {"ping": 1};
    for (what, client) in [("local mongod", &node.local), ("replica set", &node.pbm)] {
        match tokio::time::timeout(
            PING_TIMEOUT,
            client.database("admin").run_command(ping.clone()),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{what}: {}", crate::node::concise(&e))),
            Err(_) => return Err(format!("{what}: no answer within {PING_TIMEOUT:?}")),
        }
    }
    Ok(())
}
