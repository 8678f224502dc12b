//! The shapes of what the API reads: every request body and query type a `/v1` handler
//! extracts, with its JSON Schema derived from the Rust type itself (`schemars`, following the
//! type's serde attributes: renames, defaults, `deny_unknown_fields`), so the document says
//! exactly what the handler accepts, field by field.
//!
//! A handler's extractor types reach the document as their Rust names ([`super::super::RouteInfo`]
//! `inputs`); a type is found here by that name. A body or query type missing from
//! [`request_shapes`] is listed by [`super::undescribed`], and the OpenAPI test fails on it, so
//! a new route cannot ship with an undocumented body.
//!
//! The few bodies that are not one JSON type (a component's bytes, a package archive, the
//! model's DSL text, a tool's own input) are described by [`raw_body`], by handler.

use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::super::{
    agents, approvals, audit, authz, ciba, connections, device, events, identity_admin, marketplace, passkeys, runs,
    sso, tenants,
};

/// A type a handler reads, with the function that writes its schema.
pub(crate) struct Shape {
    /// The type's [`std::any::type_name`], as it appears among a route's extractors.
    pub rust: &'static str,
    schema: fn(&mut SchemaGenerator) -> Schema,
}

impl Shape {
    fn of<T: JsonSchema>() -> Shape {
        Shape { rust: std::any::type_name::<T>(), schema: |g| g.subschema_for::<T>() }
    }

    /// The schema: a `$ref` into `#/components/schemas` (added to `g`), or inline when `g`
    /// inlines (query parameters are listed one by one).
    pub fn schema(&self, g: &mut SchemaGenerator) -> Value {
        (self.schema)(g).to_value()
    }
}

/// Every request body and query type of the `/v1` handlers.
pub(crate) fn request_shapes() -> Vec<Shape> {
    vec![
        Shape::of::<agents::NewAgent>(),
        Shape::of::<approvals::ApprovalsQuery>(),
        Shape::of::<approvals::Decision>(),
        Shape::of::<audit::AuditQuery>(),
        Shape::of::<audit::SearchQuery>(),
        Shape::of::<audit::SummaryQuery>(),
        Shape::of::<audit::ChainQuery>(),
        Shape::of::<authz::TupleBody>(),
        Shape::of::<authz::ReadTuplesQuery>(),
        Shape::of::<ciba::TenantQuery>(),
        Shape::of::<ciba::PutApprover>(),
        Shape::of::<ciba::RegisterClient>(),
        Shape::of::<ciba::PutExternalOp>(),
        Shape::of::<connections::PutConnection>(),
        Shape::of::<connections::ConnectionQuery>(),
        Shape::of::<connections::RotateSecret>(),
        Shape::of::<connections::NewMasterKey>(),
        Shape::of::<device::Confirm>(),
        Shape::of::<events::EventsQuery>(),
        Shape::of::<identity_admin::PutIssuer>(),
        Shape::of::<identity_admin::IssuerQuery>(),
        Shape::of::<identity_admin::MapSubject>(),
        Shape::of::<marketplace::PackageRequest>(),
        Shape::of::<marketplace::UpgradeQuery>(),
        Shape::of::<marketplace::InstallQuery>(),
        Shape::of::<marketplace::TrustRequest>(),
        Shape::of::<passkeys::Register>(),
        Shape::of::<passkeys::Finish>(),
        Shape::of::<passkeys::SignIn>(),
        Shape::of::<passkeys::SignInFinish>(),
        Shape::of::<runs::AheadRequest>(),
        Shape::of::<runs::WaitQuery>(),
        Shape::of::<runs::NewRun>(),
        Shape::of::<runs::Finish>(),
        Shape::of::<runs::NewPolicy>(),
        Shape::of::<sso::PutSso>(),
        Shape::of::<tenants::NewTenant>(),
        Shape::of::<tenants::NewInvitation>(),
        Shape::of::<tenants::Accept>(),
        Shape::of::<tenants::CreateToken>(),
        Shape::of::<tenants::CreateOperatorToken>(),
    ]
}

/// A generator for OpenAPI 3.1 (JSON Schema 2020-12) of what the host reads (a field with a
/// default is optional), whose named schemas go to `#/components/schemas`; `inline` writes
/// each schema whole instead (query parameters).
pub(crate) fn generator(inline: bool) -> SchemaGenerator {
    settings(inline).into_generator()
}

/// A generator of what the host writes (the serialize contract: a field it always writes is
/// required, one it may leave out is not).
pub(crate) fn answer_generator() -> SchemaGenerator {
    settings(false).with(|s| s.contract = Contract::Serialize).into_generator()
}

fn settings(inline: bool) -> SchemaSettings {
    SchemaSettings::draft2020_12().with(|s| {
        s.definitions_path = "/components/schemas".into();
        s.meta_schema = None;
        s.inline_subschemas = inline;
    })
}

/// The request body of a handler that reads raw bytes, by its Rust path; `None` for one that
/// reads none.
pub(crate) fn raw_body(handler: &str, g: &mut SchemaGenerator) -> Option<Value> {
    let content = match handler.rsplit("::api::").next().unwrap_or(handler) {
        "tools::call_tool" => json!({ "application/json": { "schema": {
            "description": "The tool's input: a JSON value matching the tool's `input_schema` (GET /v1/tools)." } } }),
        "components::add" => json!({ "application/wasm": { "schema": {
            "type": "string", "contentMediaType": "application/wasm",
            "description": "A WebAssembly component built against `wit/` (compiled and checked before it is kept)." } } }),
        "marketplace::install" | "marketplace::upgrade" => json!({
            "application/json": { "schema": Shape::of::<marketplace::PackageRequest>().schema(g) },
            "application/x-tar": { "schema": { "type": "string", "contentMediaType": "application/x-tar",
                "description": "A signed package archive (`airlock package build`)." } },
        }),
        "authz::write_model" => json!({ "text/plain": { "schema": { "type": "string",
            "description": "An authorization model in the OpenFGA DSL (`model\\n  schema 1.1\\ntype user ...`)." } } }),
        _ => return None,
    };
    Some(json!({ "required": true, "content": content }))
}
