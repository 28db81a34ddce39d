//! The finishing pass over the OpenAPI document: what every route shares is read off the route's
//! own entry (its security, parameters and body) instead of being repeated by hand on each, so a
//! route added later is described the same way. Routes declare only what is theirs (403, 404,
//! 409, their 422 codes, 429, 503).

use serde_json::{Map, Value, json};

const PROBLEM_REF: &str = "#/components/schemas/Problem";
const PROBLEM_JSON: &str = "application/problem+json";

/// The document as served: errors as `application/problem+json`, and the answers of the
/// extractors (401, the 400s of bad ids and queries, the 4xx of a JSON body) on every route that
/// uses them.
pub(crate) fn finish(api: utoipa::openapi::OpenApi) -> Value {
    let mut doc = serde_json::to_value(api).unwrap_or(Value::Null);
    split_nullable_formats(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for item in paths.values_mut() {
            for op in item
                .as_object_mut()
                .into_iter()
                .flat_map(|m| m.values_mut())
            {
                finish_operation(op);
            }
        }
    }
    doc
}

fn finish_operation(op: &mut Value) {
    let secured = op["security"]
        .as_array()
        .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
    let params: Vec<(String, String, Option<String>)> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["in"].as_str().unwrap_or_default().to_owned(),
                p["name"].as_str().unwrap_or_default().to_owned(),
                p["schema"]["format"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let json_body = op["requestBody"]["content"]
        .get("application/json")
        .is_some();
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    if secured {
        add(
            responses,
            "401",
            "`unauthenticated`: the bearer token is missing, unknown, expired or revoked",
        );
    }
    if params
        .iter()
        .any(|(at, _, format)| at == "path" && format.as_deref() == Some("uuid"))
    {
        add(
            responses,
            "400",
            "`invalid_id`: an id in the path is not a UUID",
        );
    }
    if params.iter().any(|(at, _, _)| at == "query") {
        add(
            responses,
            "400",
            "`invalid_query`: a query parameter is not of its type",
        );
    }
    for (at, name, _) in &params {
        match (at.as_str(), name.as_str()) {
            ("query", "limit") => add(responses, "400", "`invalid_limit`: not 1–100"),
            ("query", "cursor") => add(
                responses,
                "400",
                "`invalid_cursor`: not a cursor this server gave out for this list",
            ),
            _ => {}
        }
    }
    if json_body {
        add(
            responses,
            "400",
            "`malformed_json`: the body is not JSON; `unreadable_body`: it could not be read",
        );
        add(
            responses,
            "413",
            "`body_too_large`: the body is larger than 64 KiB",
        );
        add(
            responses,
            "415",
            "`unsupported_media_type`: the body is not sent as `application/json`",
        );
        add(
            responses,
            "422",
            "`invalid_body`: the JSON does not have the shape of the schema",
        );
    }
    for (status, response) in responses.iter_mut() {
        as_problem(status, response);
    }
}

/// `{"type": ["string", "null"], "format": "uuid"}` means what it says, but generators tend to
/// drop the format of a multi-type schema; the same set as a `oneOf` keeps it.
fn split_nullable_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let nullable_format = map.contains_key("format")
                && map["type"]
                    .as_array()
                    .is_some_and(|t| t.len() == 2 && t.contains(&json!("null")));
            if nullable_format {
                let types = map.remove("type").unwrap_or_default();
                let kind = types
                    .as_array()
                    .and_then(|t| t.iter().find(|t| *t != "null"))
                    .cloned()
                    .unwrap_or_default();
                let description = map.remove("description");
                let mut present = std::mem::take(map);
                present.insert("type".into(), kind);
                map.insert(
                    "oneOf".into(),
                    json!([Value::Object(present), {"type": "null"}]),
                );
                if let Some(d) = description {
                    map.insert("description".into(), d);
                }
            } else {
                map.values_mut().for_each(split_nullable_formats);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(split_nullable_formats),
        _ => {}
    }
}

/// Adds a problem response, or its line to the one the route declared.
fn add(responses: &mut Map<String, Value>, status: &str, line: &str) {
    let response = responses.entry(status).or_insert_with(
        || json!({"description": "", "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}}}),
    );
    let code = line.split('`').nth(1).unwrap_or(line);
    let description = response["description"].as_str().unwrap_or_default();
    if description.contains(&format!("`{code}`")) {
        return;
    }
    response["description"] = Value::String(if description.is_empty() {
        line.to_owned()
    } else {
        format!("{description}; {line}")
    });
}

/// A response whose body is a `Problem` is served as `application/problem+json`, with the headers
/// that go with its status.
fn as_problem(status: &str, response: &mut Value) {
    let is_problem = |c: &Value| c["schema"]["$ref"] == PROBLEM_REF;
    let Some(content) = response.get_mut("content").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(json) = content
        .get("application/json")
        .filter(|c| is_problem(c))
        .cloned()
    {
        content.remove("application/json");
        content.insert(PROBLEM_JSON.to_owned(), json);
    }
    if content.values().any(is_problem) {
        add_headers(status, response);
    }
}

fn add_headers(status: &str, response: &mut Value) {
    let header = match status {
        "401" => {
            json!({"WWW-Authenticate": {"description": "`Bearer`", "required": true, "schema": {"type": "string"}}})
        }
        "429" | "503" => {
            json!({"Retry-After": {"description": "Seconds to wait before trying again (also `retry_after_seconds` in the body).", "schema": {"type": "integer", "minimum": 1}}})
        }
        _ => return,
    };
    if let (Some(headers), Some(new)) = (
        response
            .as_object_mut()
            .map(|r| r.entry("headers").or_insert_with(|| json!({}))),
        header.as_object(),
    ) && let Some(headers) = headers.as_object_mut()
    {
        for (name, value) in new {
            headers.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
}
