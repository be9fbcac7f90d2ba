//! `GET /v2/openapi.json`: the API as an OpenAPI 3.1 document, generated from the table the
//! router and the access check share ([`ENDPOINTS`]): every path and method with what it is
//! for, the access it needs (a bearer token, the scopes named), its path and query
//! parameters, its request body's schema and its answers, every error in the one shape
//! `{"error", "code"}`. The schemas of request bodies and query parameters are derived by
//! `utoipa` from the very types the handlers read (`dta_api`'s bodies and this module's
//! siblings'), so they cannot drift from what the node takes.
//!
//! `docs/openapi.json` is this document, committed; a test fails when the two differ, and
//! `DTA_UPDATE_OPENAPI=1 cargo test -p dta-node openapi` writes it anew.
//!
//! What it does not do: describe answers field by field (an answer is a JSON object unless
//! said otherwise), or serve anything but the document.

use axum::Json;
use serde_json::{Map, Value, json};
use utoipa::openapi::path::ParameterIn;
use utoipa::{IntoParams, ToSchema};

use super::access::{Access, ENDPOINTS};
use super::errors::ErrorCode;

/// `GET /v2/openapi.json`.
pub async fn served() -> Json<Value> {
    Json(document())
}

/// What a request carries besides its path parameters.
#[derive(Clone, Copy)]
enum Body {
    /// None.
    Nothing,
    /// JSON of the named component schema.
    Json(fn() -> Component),
    /// Bytes of a block (`PUT /v2/blocks`).
    Block,
    /// A CAR v1 archive.
    Car,
    /// The original API's JSON (its keys matched without regard to case), as the schema names.
    Original(fn() -> Component),
}

/// A schema for `components/schemas`: its name, itself, and the schemas it refers to.
type Component = (String, Value, Vec<(String, Value)>);

fn component<T: ToSchema>() -> Component {
    let mut nested = Vec::new();
    T::schemas(&mut nested);
    let to_json = |schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>| {
        serde_json::to_value(schema).unwrap_or(Value::Null)
    };
    (
        T::name().into_owned(),
        to_json(&T::schema()),
        nested
            .iter()
            .map(|(name, schema)| (name.clone(), to_json(schema)))
            .collect(),
    )
}

fn query<T: IntoParams>() -> Vec<Value> {
    T::into_params(|| Some(ParameterIn::Query))
        .iter()
        .map(|p| serde_json::to_value(p).unwrap_or(Value::Null))
        .collect()
}

/// What one method of one path takes and answers, beyond the table's summary and access.
struct Shape {
    body: Body,
    query: Vec<Value>,
    /// The success status and what its answer is.
    success: u16,
    answer: Answer,
    /// `?wait=` may end with 202 Accepted, the step not landed yet.
    accepted: bool,
}

/// What a success answer is.
#[derive(Clone, Copy)]
enum Answer {
    /// JSON of the named component schema.
    Typed(fn() -> Component),
    /// A JSON array of it.
    List(fn() -> Component),
    /// This document.
    Document,
    /// JSON not described: a route the table below forgets (a test finds it).
    Undescribed,
    Html,
    Script,
    Events,
    Metrics,
    Bytes,
    Car,
}

fn shape(method: &str, path: &str) -> Shape {
    use super::answers::{
        AuditAnswer, BlockedAnswer, HealthAnswer, IdentityAnswer, ImportAnswer, IndexAnswer,
        KeystoreAnswer, LogAnswer, NodeAnswer, PeerAnswer, RecordAnswer, StoredBlockAnswer,
        TokenAnswer, UnblockedAnswer, VoteAnswer,
    };
    use super::mpin_answers::{
        ChallengeAnswer, ClientSecretAnswer, MpinRecordAnswer, MpinTokenAnswer, PermitAnswer,
        ServerSecretAnswer, VerdictAnswer,
    };
    use super::orders::{AuditQuery, PrincipalQuery};
    use super::v1::answers as v1;
    use super::wait::WaitQuery;
    let record = Answer::Typed(component::<RecordAnswer>);
    let plain = |success: u16, answer: Answer| Shape {
        body: Body::Nothing,
        query: Vec::new(),
        success,
        answer,
        accepted: false,
    };
    let with_body = |body: Body, success: u16| Shape {
        body,
        query: Vec::new(),
        success,
        answer: Answer::Undescribed,
        accepted: false,
    };
    // A call that starts a custody step answers the order's record, now or after `?wait=`.
    let waiting = |body: Body, success: u16| Shape {
        body,
        query: query::<WaitQuery>(),
        success,
        answer: record,
        accepted: true,
    };
    // An M-Pin issuance takes the same body whatever it issues.
    let issuance = |made: fn() -> Component| Shape {
        answer: Answer::Typed(made),
        ..with_body(Body::Json(component::<dta_api::mpin::IssueBody>), 200)
    };
    let audit = |answer: Answer| Shape {
        query: query::<AuditQuery>(),
        ..plain(200, answer)
    };
    match (method, path) {
        ("GET", "/ui") => plain(200, Answer::Html),
        ("GET", "/ui/{asset}") => plain(200, Answer::Script),
        ("GET", "/v2/events") => plain(200, Answer::Events),
        ("GET", "/metrics") => plain(200, Answer::Metrics),
        ("GET", "/v2/openapi.json") => plain(200, Answer::Document),
        ("GET", "/") => plain(200, Answer::Typed(component::<IndexAnswer>)),
        ("GET", "/v2/health") => plain(200, Answer::Typed(component::<HealthAnswer>)),
        ("POST", "/v2/backup/checkpoint") => plain(
            201,
            Answer::Typed(component::<super::answers::CheckpointAnswer>),
        ),
        ("GET", "/v2/keystore") => plain(200, Answer::Typed(component::<KeystoreAnswer>)),
        ("GET", "/v2/tokens") => plain(200, Answer::List(component::<TokenAnswer>)),
        ("DELETE", "/v2/tokens/{id}") => plain(200, Answer::Typed(component::<TokenAnswer>)),
        ("PUT", "/v2/peers/blocked/{peer}") => {
            plain(200, Answer::Typed(component::<BlockedAnswer>))
        }
        ("DELETE", "/v2/peers/blocked/{peer}") => {
            plain(200, Answer::Typed(component::<UnblockedAnswer>))
        }
        ("GET", "/v2/node") => plain(200, Answer::Typed(component::<NodeAnswer>)),
        ("POST", "/v2/network/probe") => {
            plain(200, Answer::Typed(component::<super::answers::ProbeAnswer>))
        }
        ("GET", "/v2/network/heads/{cid}") => plain(
            200,
            Answer::Typed(component::<super::answers::HeadSeenAnswer>),
        ),
        ("GET", "/v2/peers") | ("GET", "/v2/peers/blocked") => {
            plain(200, Answer::List(component::<PeerAnswer>))
        }
        ("GET", "/v2/identities") => plain(200, Answer::List(component::<IdentityAnswer>)),
        ("GET", "/v2/identities/{cid}") => plain(200, Answer::Typed(component::<IdentityAnswer>)),
        ("GET", "/v2/orders") => Shape {
            query: query::<super::order_list::ListQuery>(),
            ..plain(200, Answer::List(component::<RecordAnswer>))
        },
        ("POST", "/v2/orders/{reference}/abandon") => plain(200, record),
        ("POST", "/v2/identities/{cid}/rotate") => {
            plain(200, Answer::Typed(component::<IdentityAnswer>))
        }
        ("POST", "/v2/identities/{cid}/revoke") => Shape {
            answer: Answer::Typed(component::<super::answers::RevokedAnswer>),
            ..with_body(Body::Json(component::<super::revocation::RevokeBody>), 201)
        },
        ("POST", "/v2/identities") => Shape {
            answer: Answer::Typed(component::<IdentityAnswer>),
            ..with_body(Body::Json(component::<super::HostBody>), 201)
        },
        ("POST", "/v2/tokens") => Shape {
            answer: Answer::Typed(component::<TokenAnswer>),
            ..with_body(Body::Json(component::<super::tokens::CreateBody>), 201)
        },
        ("POST", "/v2/orders") => {
            waiting(Body::Json(component::<dta_api::orders::CreateBody>), 201)
        }
        ("GET", "/v2/orders/{reference}") => Shape {
            query: query::<PrincipalQuery>(),
            ..plain(200, Answer::List(component::<RecordAnswer>))
        },
        ("GET", "/v2/orders/{reference}/secret") => Shape {
            query: query::<PrincipalQuery>(),
            ..plain(
                200,
                Answer::Typed(component::<super::orders::ReceivedSecret<'static>>),
            )
        },
        ("POST", "/v2/orders/{reference}/release") => {
            waiting(Body::Json(component::<dta_api::orders::ReleaseBody>), 200)
        }
        ("POST", "/v2/orders/{reference}/refresh") => waiting(Body::Nothing, 200),
        ("POST", "/v2/orders/{reference}/cancel") => waiting(Body::Nothing, 200),
        ("POST", "/v2/orders/{reference}/reshare") => {
            waiting(Body::Json(component::<dta_api::orders::ReshareBody>), 200)
        }
        ("POST", "/v2/orders/{reference}/sign") => {
            waiting(Body::Json(component::<super::signing::SignBody>), 200)
        }
        ("POST", "/v2/orders/{reference}/approvals") => Shape {
            answer: Answer::Typed(component::<VoteAnswer>),
            ..with_body(Body::Json(component::<dta_api::policy::VoteBody>), 201)
        },
        ("GET", "/v2/orders/{reference}/audit") => audit(Answer::Typed(component::<AuditAnswer>)),
        ("GET", "/v2/orders/{reference}/log") => audit(Answer::Typed(component::<LogAnswer>)),
        ("GET", "/v2/orders/{reference}/car") => audit(Answer::Car),
        ("PUT", "/v2/blocks") => Shape {
            query: query::<super::PutQuery>(),
            answer: Answer::Typed(component::<StoredBlockAnswer>),
            ..with_body(Body::Block, 201)
        },
        ("POST", "/v2/blocks/import") => Shape {
            answer: Answer::Typed(component::<ImportAnswer>),
            ..with_body(Body::Car, 200)
        },
        ("GET", "/v2/blocks/{cid}") => plain(200, Answer::Bytes),
        ("GET", "/v2/mpin") => plain(200, Answer::List(component::<MpinRecordAnswer>)),
        ("POST", "/v2/mpin/client-secret") => issuance(component::<ClientSecretAnswer<'static>>),
        ("POST", "/v2/mpin/server-secret") => issuance(component::<ServerSecretAnswer>),
        ("POST", "/v2/mpin/permit") => issuance(component::<PermitAnswer<'static>>),
        ("POST", "/v2/mpin/token") => Shape {
            answer: Answer::Typed(component::<MpinTokenAnswer<'static>>),
            ..with_body(Body::Json(component::<super::mpin::TokenBody>), 200)
        },
        ("POST", "/v2/mpin/auth/challenge") => Shape {
            answer: Answer::Typed(component::<ChallengeAnswer>),
            ..with_body(Body::Json(component::<super::mpin::ChallengeBody>), 200)
        },
        ("POST", "/v2/mpin/auth/verify") => Shape {
            answer: Answer::Typed(component::<VerdictAnswer>),
            ..with_body(Body::Json(component::<super::mpin::VerifyBody>), 200)
        },
        ("GET", "/v1/status") => plain(200, Answer::Typed(component::<v1::StatusAnswer>)),
        ("GET", "/v1/order") => Shape {
            query: query::<super::v1::Paging>(),
            ..plain(200, Answer::Typed(component::<v1::OrderListAnswer>))
        },
        ("GET", "/v1/identity") => Shape {
            query: query::<super::v1::Paging>(),
            ..plain(200, Answer::Typed(component::<v1::IdentityListAnswer>))
        },
        ("GET", "/v1/identity/{cid}") => plain(200, Answer::Typed(component::<v1::IdentityAnswer>)),
        ("GET", "/v1/order/{reference}") => {
            plain(200, Answer::Typed(component::<v1::GetOrderAnswer<'static>>))
        }
        ("POST", "/v1/order") => Shape {
            answer: Answer::Typed(component::<v1::OrderAnswer>),
            ..with_body(Body::Original(component::<super::v1::OrderBody>), 200)
        },
        ("POST", "/v1/order/secret") => Shape {
            answer: Answer::Typed(component::<v1::SecretAnswer<'static>>),
            ..with_body(Body::Original(component::<super::v1::SecretBody>), 200)
        },
        ("POST", "/v1/identity") => Shape {
            answer: Answer::Typed(component::<v1::CreatedIdentityAnswer>),
            ..with_body(Body::Original(component::<super::v1::IdentityBody>), 200)
        },
        _ => plain(200, Answer::Undescribed),
    }
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn content(media: &str, schema: Value) -> Value {
    json!({ media: { "schema": schema } })
}

/// Registers a component (and what it refers to); a reference to it.
fn register(made: fn() -> Component, schemas: &mut Map<String, Value>) -> Value {
    let (name, schema, nested) = made();
    schemas.insert(name.clone(), schema);
    for (name, schema) in nested {
        schemas.insert(name, schema);
    }
    schema_ref(&name)
}

fn answer_content(answer: Answer, schemas: &mut Map<String, Value>) -> Value {
    // Answers that are not JSON are described by their media type alone.
    let raw = |what: &str| json!({ "description": what });
    match answer {
        Answer::Typed(made) => content("application/json", register(made, schemas)),
        Answer::List(made) => content(
            "application/json",
            json!({ "type": "array", "items": register(made, schemas) }),
        ),
        Answer::Document => content(
            "application/json",
            json!({ "type": "object", "description": "an OpenAPI 3.1 document" }),
        ),
        Answer::Undescribed => content("application/json", json!({})),
        Answer::Html => content("text/html", raw("the page")),
        Answer::Script => json!({
            "text/javascript": { "schema": raw("a script of the page") },
            "text/css": { "schema": raw("the page's style") },
        }),
        Answer::Events => content(
            "text/event-stream",
            raw("server-sent events: snapshot, then peers, record and heartbeat"),
        ),
        Answer::Metrics => content("text/plain", raw("Prometheus' text format")),
        Answer::Bytes => json!({
            "application/vnd.ipld.raw": { "schema": raw("the block's bytes") },
            "application/vnd.ipld.dag-cbor": { "schema": raw("the block's bytes") },
        }),
        Answer::Car => content("application/vnd.ipld.car", raw("a CAR v1 archive")),
    }
}

fn security(access: Access) -> (Value, String) {
    match access {
        Access::Open => (json!([]), "Open: no token.".into()),
        Access::Token(scopes) => (
            json!([{ "token": [] }]),
            format!(
                "Needs a token with the scope{} {}.",
                if scopes.len() > 1 { "s" } else { "" },
                scopes
                    .iter()
                    .map(|s| format!("`{}`", s.as_str()))
                    .collect::<Vec<_>>()
                    .join(" and ")
            ),
        ),
        Access::Original(_) => (
            json!([{}, { "token": [] }]),
            "The original D-TA API: open while the API listens on loopback only and \
             `api.v1_token` is off; otherwise a token with the scope named in `GET /`."
                .into(),
        ),
        Access::Metrics => (
            json!([{}, { "token": [] }]),
            "Open with `api.metrics_open`; otherwise a token with the scope `read`.".into(),
        ),
    }
}

fn operation_id(method: &str, path: &str) -> String {
    let words: Vec<String> = path
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.trim_start_matches('{')
                .trim_end_matches('}')
                .replace(['-', '.'], "_")
        })
        .collect();
    format!("{}_{}", method.to_ascii_lowercase(), words.join("_"))
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    let error = json!({ "$ref": "#/components/responses/Error" });
    for endpoint in ENDPOINTS {
        let mut item = Map::new();
        for (method, access) in endpoint.methods {
            let shape = shape(method, endpoint.path);
            let mut parameters: Vec<Value> = endpoint
                .path
                .split('/')
                .filter_map(|part| part.strip_prefix('{')?.strip_suffix('}'))
                .map(|name| {
                    json!({
                        "name": name,
                        "in": "path",
                        "required": true,
                        "schema": { "type": "string" },
                    })
                })
                .collect();
            parameters.extend(shape.query.iter().cloned());
            let (security, needs) = security(*access);
            let mut operation = json!({
                "operationId": operation_id(method, endpoint.path),
                "summary": endpoint.about,
                "description": needs,
                "security": security,
            });
            if !parameters.is_empty() {
                operation["parameters"] = Value::Array(parameters);
            }
            let body = match shape.body {
                Body::Nothing => None,
                Body::Json(made) | Body::Original(made) => {
                    Some(content("application/json", register(made, &mut schemas)))
                }
                Body::Block => Some(content(
                    "application/octet-stream",
                    json!({ "description": "the block's bytes" }),
                )),
                Body::Car => Some(content(
                    "application/vnd.ipld.car",
                    json!({ "description": "a CAR v1 archive" }),
                )),
            };
            if let Some(body) = body {
                // A release's body may be left out: the order's beneficiary is the default.
                let required =
                    !(*method == "POST" && endpoint.path == "/v2/orders/{reference}/release");
                operation["requestBody"] = json!({ "required": required, "content": body });
            }
            let mut responses = Map::new();
            responses.insert(
                shape.success.to_string(),
                json!({
                    "description": "Done.",
                    "content": answer_content(shape.answer, &mut schemas),
                }),
            );
            if shape.accepted {
                responses.insert(
                    "202".into(),
                    json!({
                        "description": "The wait ended before the step landed: the record as it is, and whom it waits for.",
                        "content": answer_content(shape.answer, &mut schemas),
                    }),
                );
            }
            // Every error is the one shape; the statuses a route may give are listed, and
            // `default` covers the rest (a 5xx from a failing node, a 405 for a method the
            // route does not take).
            responses.insert("400".into(), error.clone());
            if matches!(access, Access::Token(_)) {
                responses.insert("401".into(), error.clone());
                responses.insert("403".into(), error.clone());
            }
            if endpoint.path.contains('{') {
                responses.insert("404".into(), error.clone());
            }
            if !matches!(shape.body, Body::Nothing) {
                responses.insert("413".into(), error.clone());
                responses.insert("422".into(), error.clone());
            }
            responses.insert("default".into(), error.clone());
            operation["responses"] = Value::Object(responses);
            item.insert(method.to_ascii_lowercase(), operation);
        }
        paths.insert(endpoint.path.to_owned(), Value::Object(item));
    }
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error", "code"],
            "properties": {
                "error": { "type": "string", "description": "What went wrong, for a person; never a secret." },
                "code": { "type": "string", "enum": codes, "description": "The kind of failure, stable for scripts." },
            },
        }),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "dta node API",
            "version": crate::version::VERSION,
            "description": "A dta node's HTTP API: `/v2` native, `/v1` the original D-TA's. `GET /` lists the endpoints with the access each needs.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {
                "Error": {
                    "description": "The request failed; the status and `code` say how.",
                    "content": content("application/json", schema_ref("Error")),
                },
            },
            "securitySchemes": {
                "token": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API token (`dta token create`); `HOME/api-token` has one with every scope.",
                },
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
    }

    #[test]
    fn the_committed_document_is_the_one_the_node_serves() {
        let served = serde_json::to_string_pretty(&document()).unwrap() + "\n";
        if std::env::var_os("DTA_UPDATE_OPENAPI").is_some() {
            std::fs::write(committed(), &served).unwrap();
        }
        let on_disk = std::fs::read_to_string(committed()).unwrap_or_default();
        assert!(
            on_disk == served,
            "docs/openapi.json differs from the document the node serves; \
             DTA_UPDATE_OPENAPI=1 cargo test -p dta-node openapi writes it anew"
        );
    }

    #[test]
    fn every_endpoint_and_method_is_described_with_its_body_schema() {
        let document = document();
        let mut operations = 0;
        for endpoint in ENDPOINTS {
            for (method, _) in endpoint.methods {
                let operation = &document["paths"][endpoint.path][method.to_ascii_lowercase()];
                assert!(operation.is_object(), "{method} {}", endpoint.path);
                assert!(operation["responses"]["default"].is_object());
                operations += 1;
                if let Some(reference) =
                    operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                        .as_str()
                {
                    let name = reference.trim_start_matches("#/components/schemas/");
                    assert!(
                        document["components"]["schemas"][name].is_object(),
                        "{method} {}: {name}",
                        endpoint.path
                    );
                }
            }
        }
        assert!(operations >= 50, "{operations}");
        // Every JSON answer is described, field by field.
        let undescribed: Vec<String> = ENDPOINTS
            .iter()
            .flat_map(|e| e.methods.iter().map(move |(m, _)| (*m, e.path)))
            .filter(|(method, path)| matches!(shape(method, path).answer, Answer::Undescribed))
            .map(|(method, path)| format!("{method} {path}"))
            .collect();
        assert!(
            undescribed.is_empty(),
            "answers not described: {undescribed:?}"
        );
        // The order body is the real one: its secret fields are write-only strings, and an
        // unknown field is refused as the node refuses it.
        let order = &document["components"]["schemas"]["CreateBody"];
        assert_eq!(
            order["properties"]["secret_hex"]["writeOnly"], true,
            "{order}"
        );
        assert_eq!(order["additionalProperties"], false, "{order}");
        assert_eq!(
            order["required"],
            json!(["fiduciaries", "threshold"]),
            "{order}"
        );
        let policy = &document["components"]["schemas"]["PolicyBody"];
        assert!(policy["properties"]["groups"].is_object(), "{policy}");
        let create = &document["paths"]["/v2/orders"]["post"];
        assert_eq!(create["parameters"][0]["name"], "wait", "{create}");
        assert!(create["responses"]["201"].is_object());
        assert!(create["responses"]["202"].is_object());
    }
}
