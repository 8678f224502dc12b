//! `GET /v1/openapi.json` describes every `/v1` route the router serves, and is a valid
//! OpenAPI 3.1 document by the OpenAPI Initiative's own validator (PyPI
//! `openapi-spec-validator`); every body and query a handler reads, and every answer it gives, is described field by field
//! (the answers are checked against what the handlers send by every test that uses
//! `TestHost::request`).

mod support;

use std::collections::HashSet;

use airlock::api::{route_table, Scope};
use serde_json::Value;
use support::TestHost;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_lists_every_v1_route_and_validates() {
    let t = TestHost::start().await;
    let doc: Value = reqwest::get(format!("{}/v1/openapi.json", t.url)).await.unwrap().json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["servers"][0]["url"], t.url.as_str());

    let table = route_table(t.host.clone());
    let v1: Vec<_> = table.iter().filter(|r| r.path.starts_with("/v1/")).collect();
    assert!(v1.len() > 90, "{}", v1.len());
    let mut ids = HashSet::new();
    for route in &v1 {
        let op = &doc["paths"][route.path][route.method.as_str().to_lowercase()];
        assert!(op.is_object(), "{} {} is missing from the document", route.method, route.path);
        assert!(
            !op["summary"].as_str().unwrap().is_empty(),
            "{} {} has no summary (`.doc(...)`)",
            route.method,
            route.path
        );
        assert!(ids.insert(op["operationId"].as_str().unwrap().to_string()), "duplicate id {}", op["operationId"]);
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.as_object()?.keys().next().map(String::as_str))
            .collect();
        let expected: &[&str] = match route.scope {
            Scope::Public => &[],
            Scope::Operator => &["operator"],
            Scope::Tenant => &["member", "session"],
            Scope::Agent => &["agent"],
        };
        assert_eq!(schemes, expected, "{} {}", route.method, route.path);
    }
    let documented: usize = doc["paths"].as_object().unwrap().values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(documented, v1.len(), "nothing listed that the router does not serve");

    // What the handlers read, field by field, from the types of their extractors.
    assert_eq!(airlock::api::openapi::undescribed(&table), Vec::<String>::new(), "request types without a schema");
    let create = &doc["paths"]["/v1/agents"]["post"];
    assert_eq!(create["operationId"], "agents.create");
    let reference = create["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str().unwrap();
    let new_agent = &doc["components"]["schemas"][reference.strip_prefix("#/components/schemas/").unwrap()];
    assert_eq!(new_agent["required"], serde_json::json!(["name"]), "{new_agent}");
    assert_eq!(new_agent["properties"]["name"]["type"], "string", "{new_agent}");
    // Nested types (a connection's kind and placement) are described too, with their values.
    let put = &doc["paths"]["/v1/connections/{name}"]["put"]["requestBody"]["content"]["application/json"]["schema"];
    let put = &doc["components"]["schemas"][put["$ref"].as_str().unwrap().rsplit('/').next().unwrap()];
    assert_eq!(put["required"], serde_json::json!(["secret"]), "{put}");
    let document = doc.to_string();
    for value in ["oauth2_refresh", "oauth2_client_credentials", "api_key"] {
        assert!(document.contains(&format!("\"{value}\"")), "the connection kinds are listed: {value}");
    }
    // A query type becomes one parameter per field, with its description.
    let search = doc["paths"]["/v1/audit/search"]["get"]["parameters"].as_array().unwrap();
    let outcome = search.iter().find(|p| p["name"] == "outcome").expect("audit search reads `outcome`");
    assert_eq!(outcome["in"], "query");
    assert!(outcome["description"].as_str().unwrap().contains("denied"), "{outcome}");
    assert_eq!(search.iter().filter(|p| p["name"] == "tenant").count(), 1, "tenant listed once");
    // Raw bodies say what they are.
    let upload = &doc["paths"]["/v1/components/{name}"]["post"];
    assert!(upload["requestBody"]["content"]["application/wasm"].is_object(), "{upload}");
    let install = &doc["paths"]["/v1/marketplace/install"]["post"]["requestBody"]["content"];
    assert!(
        install["application/x-tar"].is_object() && install["application/json"]["schema"]["$ref"].is_string(),
        "{install}"
    );
    assert_eq!(doc["paths"]["/v1/tools/{tool}/call"]["post"]["parameters"][0]["name"], "tool");

    // What each route answers, from the type its handler returns.
    let schema_of = |method: &str, path: &str| {
        let schema = &doc["paths"][path][method]["responses"]["2XX"]["content"]["application/json"]["schema"];
        let name = schema["$ref"].as_str().unwrap_or_else(|| panic!("{method} {path} answers {schema}"));
        doc["components"]["schemas"][name.rsplit('/').next().unwrap()].clone()
    };
    let agents = schema_of("get", "/v1/agents");
    assert_eq!(agents["properties"]["agents"]["type"], "array", "{agents}");
    let created = schema_of("post", "/v1/agents");
    assert!(created["required"].as_array().unwrap().contains(&serde_json::json!("token")), "{created}");
    let stream = &doc["paths"]["/v1/events"]["get"]["responses"]["2XX"]["content"];
    assert!(stream["text/event-stream"].is_object(), "{stream}");

    let Some(python) = support::peer("AIRLOCK_PYTHON", "openapi-spec-validator") else { return };
    let file = std::env::temp_dir().join(format!("airlock-openapi-{}.json", std::process::id()));
    std::fs::write(&file, doc.to_string()).unwrap();
    let out = std::process::Command::new(python)
        .args(["-c", "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))\nprint('valid')"])
        .arg(&file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&file);
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
