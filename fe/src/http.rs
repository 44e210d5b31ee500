//! The HTTP front end: row ingest (`POST /v1/tables/{table}/rows`, NDJSON or CSV),
//! `GET /health` and `GET /metrics` (Prometheus text).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use eddy_proto::{BeService, ByteStream, Error, ErrorCode, WriteFormat};
use futures::StreamExt;
use serde_json::json;

use crate::metrics;

#[derive(Debug, Clone)]
struct AppState {
    be: Arc<dyn BeService>,
    body_bytes_max: usize,
}

fn error_response(e: &Error) -> Response {
    let status =
        StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({ "error": e.message, "code": format!("{:?}", e.code), "sqlstate": e.code.sqlstate() });
    (status, Json(body)).into_response()
}

async fn ingest(
    State(st): State<AppState>,
    Path(table): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-ndjson")
        .to_ascii_lowercase();
    let format = if ct.starts_with("text/csv") || ct.starts_with("application/csv") {
        let header = params
            .get("header")
            .is_some_and(|v| v == "true" || v == "1");
        let delimiter = params
            .get("delimiter")
            .and_then(|d| d.bytes().next())
            .unwrap_or(b',');
        WriteFormat::Csv { header, delimiter }
    } else if ct.contains("json") {
        WriteFormat::NdJson
    } else {
        return error_response(&Error::new(
            ErrorCode::DecodeInput,
            format!("unsupported Content-Type {ct:?}: use application/x-ndjson or text/csv"),
        ));
    };
    let too_large = Arc::new(AtomicBool::new(false));
    let body = limited(body, st.body_bytes_max, Arc::clone(&too_large));
    match st.be.write_encoded(&table, format, body).await {
        Ok(n) => {
            metrics::HTTP_ROWS.inc_by(n);
            (StatusCode::OK, Json(json!({ "table": table, "rows": n }))).into_response()
        }
        Err(e) if too_large.load(Ordering::Relaxed) => {
            let body = json!({
                "error": e.message,
                "code": "ResourceExhausted",
                "sqlstate": ErrorCode::ResourceExhausted.sqlstate(),
            });
            (StatusCode::PAYLOAD_TOO_LARGE, Json(body)).into_response()
        }
        Err(e) => error_response(&e),
    }
}

/// The body as the frames it arrives in, for the BE to decode while it arrives: joining
/// them would copy (and fault in) the whole body once more, and the decoders read records
/// across frame boundaries. Past `limit` bytes it ends with an error and sets `too_large`
/// (answered 413).
fn limited(body: Body, limit: usize, too_large: Arc<AtomicBool>) -> ByteStream {
    let mut bytes = 0usize;
    let frames = body.into_data_stream().map(move |frame| {
        let frame = frame.map_err(|e| {
            Error::new(
                ErrorCode::DecodeInput,
                format!("reading the request body: {e}"),
            )
        })?;
        bytes += frame.len();
        if bytes > limit {
            too_large.store(true, Ordering::Relaxed);
            return Err(Error::new(
                ErrorCode::ResourceExhausted,
                format!("request body exceeds fe.http_body_bytes_max ({limit} bytes)"),
            ));
        }
        Ok(frame)
    });
    Box::pin(frames)
}

async fn health() -> Response {
    (StatusCode::OK, Json(json!({ "status": "ok" }))).into_response()
}

async fn metrics_text(State(st): State<AppState>) -> Response {
    let text = format!("{}{}", metrics::render(), st.be.metrics_text());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        text,
    )
        .into_response()
}

pub fn router(be: Arc<dyn BeService>, body_bytes_max: usize) -> Router {
    Router::new()
        .route("/v1/tables/{table}/rows", post(ingest))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        // The ingest handler enforces the limit itself while it reads the body.
        .layer(DefaultBodyLimit::disable())
        .with_state(AppState { be, body_bytes_max })
}
