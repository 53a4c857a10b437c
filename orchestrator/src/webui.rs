//! The browser client (`web/`, built by Vite into `web_dir`): `GET /` is its page, `GET /assets/…` its
//! files. Nothing of it is compiled in: without a build, `/` says how to make one.

use std::path::{Component, Path, PathBuf};

use axum::{
    Router,
    extract::{Path as UrlPath, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::error::ApiError;

pub fn router<S: Clone + Send + Sync + 'static>(dir: PathBuf) -> Router<S> {
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset)).with_state(dir)
}

async fn index(State(dir): State<PathBuf>) -> Response {
    match tokio::fs::read(dir.join("index.html")).await {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(_) => ApiError::not_found(
            "web_client_not_built",
            format!(
                "the browser client isn't built in {}: run `npm --prefix web ci && npm --prefix web run build`",
                dir.display()
            ),
        )
        .into_response(),
    }
}

async fn asset(State(dir): State<PathBuf>, UrlPath(path): UrlPath<String>) -> Response {
    let rel = Path::new(&path);
    // Only plain names below `assets/`: no `..`, no absolute paths.
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return ApiError::not_found("not_found", "no such file").into_response();
    }
    match tokio::fs::read(dir.join("assets").join(rel)).await {
        Ok(body) => {
            let headers = [
                (header::CONTENT_TYPE, content_type(rel)),
                // Vite names assets by content hash.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ];
            (StatusCode::OK, headers, body).into_response()
        }
        Err(_) => ApiError::not_found("not_found", "no such file").into_response(),
    }
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "wasm" => "application/wasm",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    }
}
