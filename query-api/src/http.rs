//! HTTP JSON API on 9420 (`/api/v1/activity/…`, documented in `openapi.json`): parses query
//! strings, authenticates the bearer token and calls [`crate::query`]. Live updates are
//! server-sent events.

use crate::auth::{Authenticator, Principal};
use crate::error::ApiError;
use crate::query::{self, EntriesRequest, Selection};
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::{Stream, StreamExt};
use pipeline::shutdown::Shutdown;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use store::ClickHouse;

/// The OpenAPI 3.1 document of this API.
pub const OPENAPI: &str = include_str!("../openapi.json");

#[derive(Clone)]
pub struct AppState {
    pub ch: ClickHouse,
    pub auth: Arc<Authenticator>,
    pub shutdown: Shutdown,
    pub stream_poll: Duration,
}

impl AppState {
    fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let h = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.auth.authenticate(h)
    }
}

/// The web UI (`query-api/ui/`): static files that use only the public API below; no data is
/// served without a token.
const UI: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "/ui/app.css",
        "text/css; charset=utf-8",
        include_str!("../ui/app.css"),
    ),
];

/// The routes of the API and the UI.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    for (path, content_type, body) in UI {
        router = router.route(
            path,
            get(move || async move {
                (
                    [
                        (axum::http::header::CONTENT_TYPE, content_type),
                        (
                            axum::http::header::CONTENT_SECURITY_POLICY,
                            "default-src 'self'; frame-ancestors 'none'",
                        ),
                        (axum::http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                    ],
                    body,
                )
            }),
        );
    }
    router
        .route("/api/openapi.json", get(openapi))
        .route("/api/v1/activity/entries", get(entries))
        .route("/api/v1/activity/entries/{id}", get(entry))
        .route("/api/v1/activity/entries/{id}/trace", get(trace))
        .route("/api/v1/activity/histogram", get(histogram))
        .route("/api/v1/activity/groups", get(groups))
        .route("/api/v1/activity/supported-filters", get(supported_filters))
        .route("/api/v1/activity/values", get(values))
        .route("/api/v1/activity/stream", get(stream))
        .layer(axum::middleware::from_fn(observe))
        .with_state(state)
}

/// Counts and times every API request by its route (`MatchedPath`, so ids do not become
/// labels).
async fn observe(
    path: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let t0 = std::time::Instant::now();
    let resp = next.run(req).await;
    if let Some(path) = path
        && path.as_str().starts_with("/api/")
    {
        crate::metrics::observe(
            path.as_str(),
            "http",
            resp.status().as_u16(),
            t0.elapsed().as_secs_f64(),
        );
    }
    resp
}

/// Query-string parameters; repeated keys kept (`types=command&types=connection`).
struct Params(Vec<(String, String)>);

const SELECTION: [&str; 5] = ["from", "to", "types", "filter", "scope"];

impl Params {
    /// Parses `raw`, rejecting parameters the endpoint does not know.
    fn parse(raw: Option<String>, known: &[&str]) -> Result<Params, ApiError> {
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
        for (k, _) in &pairs {
            if !known.contains(&k.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter {k:?} (known: {})",
                    known.join(", ")
                )));
            }
        }
        Ok(Params(pairs))
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .filter(|v| !v.is_empty())
            .map(|v| {
                v.trim().parse::<i64>().map_err(|_| {
                    ApiError::BadRequest(format!("{key}: expected an integer, got {v:?}"))
                })
            })
            .transpose()
    }

    fn uint(&self, key: &str) -> Result<Option<u32>, ApiError> {
        self.int(key)?
            .map(|v| {
                u32::try_from(v)
                    .map_err(|_| ApiError::BadRequest(format!("{key}: out of range: {v}")))
            })
            .transpose()
    }

    fn selection(&self) -> Result<Selection, ApiError> {
        Selection::parse(
            self.int("from")?,
            self.int("to")?,
            &self.all("types"),
            self.get("filter"),
            self.get("scope"),
        )
    }
}

fn known(extra: &[&'static str]) -> Vec<&'static str> {
    SELECTION.iter().chain(extra).copied().collect()
}

type ApiResult = Result<Response, ApiError>;

fn json<T: serde::Serialize>(v: &T) -> ApiResult {
    Ok(axum::Json(v).into_response())
}

async fn openapi(State(st): State<AppState>, headers: HeaderMap) -> ApiResult {
    st.principal(&headers)?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        OPENAPI,
    )
        .into_response())
}

async fn entries(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let who = st.principal(&headers)?;
    let p = Params::parse(q, &known(&["cursor", "limit"]))?;
    let req = EntriesRequest {
        selection: p.selection()?,
        cursor: p.get("cursor").map(str::to_string),
        limit: p.uint("limit")?,
    };
    json(&query::entries(&st.ch, &who, req).await?)
}

async fn entry(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = st.principal(&headers)?;
    json(&query::entry(&st.ch, &who, &id).await?)
}

async fn trace(
    State(st): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult {
    let who = st.principal(&headers)?;
    json(&query::trace(&st.ch, &who, &id).await?)
}

async fn histogram(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let who = st.principal(&headers)?;
    let p = Params::parse(q, &known(&["bucket"]))?;
    json(&query::histogram(&st.ch, &who, &p.selection()?, p.int("bucket")?).await?)
}

async fn groups(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let who = st.principal(&headers)?;
    let p = Params::parse(q, &known(&[]))?;
    json(&query::groups(&st.ch, &who, &p.selection()?).await?)
}

async fn supported_filters(State(st): State<AppState>, headers: HeaderMap) -> ApiResult {
    st.principal(&headers)?;
    json(&serde_json::json!({ "data": query::supported_filters() }))
}

async fn values(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> ApiResult {
    let who = st.principal(&headers)?;
    let p = Params::parse(q, &known(&["attribute", "prefix", "limit"]))?;
    let attribute = p
        .get("attribute")
        .ok_or_else(|| ApiError::BadRequest("attribute: required".into()))?;
    let data = query::values(
        &st.ch,
        &who,
        &p.selection()?,
        attribute,
        p.get("prefix").unwrap_or(""),
        p.uint("limit")?,
    )
    .await?;
    json(&serde_json::json!({ "data": data }))
}

/// `text/event-stream` of new entries matching the selection: `event: entry` with the entry
/// as JSON (id = entry id), `event: error` when storage fails (the stream keeps polling).
async fn stream(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let who = st.principal(&headers)?;
    let p = Params::parse(q, &known(&[]))?;
    let tail = query::Tail::new(who, p.selection()?)?;
    let events = query::live(st.ch.clone(), tail, st.stream_poll).map(|item| {
        Ok(match item {
            Ok(e) => Event::default()
                .event("entry")
                .id(e.id.clone())
                .json_data(&e)
                .unwrap_or_else(|_| Event::default().event("error")),
            Err(e) => Event::default().event("error").data(e.body().to_string()),
        })
    });
    let stop = st.shutdown.clone().cancelled_owned();
    Ok(Sse::new(events.take_until(stop)).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openapi_documents_every_route_and_attribute() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let src = include_str!("http.rs");
        let routes: Vec<String> = src
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".route(\"/api"))
            .map(|l| format!("/api{l}"))
            .map(|l| l[..l.find('"').unwrap()].to_string())
            .collect();
        assert!(routes.len() >= 9, "{routes:?}");
        for r in routes {
            assert!(doc["paths"][&r]["get"].is_object(), "{r} is not documented");
        }
        let props = &doc["components"]["schemas"]["ActivityEvent"]["properties"];
        for a in schemas::filter::ATTRIBUTES {
            let stored = store::filter::column_of(a.name).unwrap().attribute;
            assert!(props[stored].is_object(), "{} is not documented", a.name);
        }
    }
}
