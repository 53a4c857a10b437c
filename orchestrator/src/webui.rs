//! The browser client (`web/`): `GET /` is its page, `GET /assets/…` its files. The build script builds it
//! with Vite and this module embeds the result, so the binary serves the app it was built with; `web_dir`
//! serves a build from disk instead (a page being worked on, rebuilt without rebuilding the server).

use std::path::{Component, Path, PathBuf};

use axum::{
    Router,
    extract::{Path as UrlPath, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};

use crate::error::ApiError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/web_files.rs"));
}

/// Where the page comes from: the binary, or a directory.
#[derive(Clone)]
enum Source {
    Embedded,
    Dir(PathBuf),
}

pub fn router<S: Clone + Send + Sync + 'static>(dir: Option<PathBuf>) -> Router<S> {
    let source = dir.map_or(Source::Embedded, Source::Dir);
    Router::new().route("/", get(index)).route("/assets/{*path}", get(asset)).with_state(source)
}

/// Whether this binary carries the browser app (built without `LIVECLASS_SKIP_WEB_BUILD`).
pub fn embedded() -> bool {
    !embedded::FILES.is_empty()
}

async fn read(source: &Source, rel: &Path) -> Option<Vec<u8>> {
    match source {
        Source::Dir(dir) => tokio::fs::read(dir.join(rel)).await.ok(),
        Source::Embedded => {
            let name = rel.to_str()?;
            embedded::FILES.iter().find(|(n, _)| *n == name).map(|(_, body)| body.to_vec())
        }
    }
}

async fn index(State(source): State<Source>) -> Response {
    match read(&source, Path::new("index.html")).await {
        Some(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        None => ApiError::not_found(
            "web_client_not_built",
            match &source {
                Source::Dir(dir) => format!(
                    "the browser client isn't built in {}: run `npm --prefix web ci && npm --prefix web run build`",
                    dir.display()
                ),
                Source::Embedded => "this server was built without its browser client (LIVECLASS_SKIP_WEB_BUILD): \
                                     rebuild it with Node.js and npm installed, or set web_dir to a build"
                    .to_string(),
            },
        )
        .into_response(),
    }
}

async fn asset(State(source): State<Source>, UrlPath(path): UrlPath<String>) -> Response {
    let rel = Path::new(&path);
    // Only plain names below `assets/`: no `..`, no absolute paths.
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return ApiError::not_found("not_found", "no such file").into_response();
    }
    match read(&source, &Path::new("assets").join(rel)).await {
        Some(body) => {
            let headers = [
                (header::CONTENT_TYPE, content_type(rel)),
                // Vite names assets by content hash.
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            ];
            (StatusCode::OK, headers, body).into_response()
        }
        None => ApiError::not_found("not_found", "no such file").into_response(),
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
