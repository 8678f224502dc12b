//! What every request passes through on its way to its route's door, in one middleware layer.
//!
//! Each `from_fn` layer boxes the rest of the stack and its own future for every request, so
//! the three things every route gets are one layer: the route's body cap
//! ([`super::rejections::cap_body`]), the request's trace span
//! ([`crate::telemetry::traces::request_span`]), and the framework's refusals rewritten into the
//! API's JSON ([`super::rejections::in_api_shape`]).

use std::sync::Arc;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::{rejections, BodyCaps};

/// Middleware: caps the body, runs the request in its span, answers errors as JSON.
pub(super) async fn front_door(caps: Arc<BodyCaps>, mut req: Request, next: Next) -> Response {
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let route = req.extensions().get::<MatchedPath>().cloned();
    let span = crate::telemetry::traces::request_span(&mut req, route.as_ref());
    let resp = match rejections::cap_body(&caps, route.as_ref(), req) {
        Ok(req) => next.run(req).instrument(span).await,
        Err(refused) => refused,
    };
    rejections::in_api_shape(&method, uri.path(), resp).await
}
