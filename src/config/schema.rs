//! The configuration's JSON Schema (draft 4, what Kong's `config_schema` expects),
//! generated from the raw types so the schema Kong validates with can never drift from
//! what the filter parses, and the structural check every configuration passes first
//! (every problem at once, each with its JSON path: serde alone stops at the first).

use serde_json::Value;

use crate::problem::Problem;

/// `config_schema` for Kong's `<filter>.meta.json`: generated from [`PluginConfig`] natively,
/// the shipped copy in the filter.
pub fn config_schema_draft4() -> Value {
    #[cfg(tools)]
    {
        draft4_for::<super::PluginConfig>()
    }
    #[cfg(filter)]
    {
        shipped_config_schema()
    }
}

/// The whole `agent_iam.meta.json` document.
pub fn kong_meta() -> Value {
    serde_json::json!({ "config_schema": config_schema_draft4() })
}

/// The draft-4 schema of the configuration type `T` (what Kong's `config_schema` expects).
#[cfg(tools)]
pub fn draft4_for<T: schemars::JsonSchema>() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<T>();
    let mut v = schema.to_value();
    to_draft4(&mut v);
    if let Value::Object(m) = &mut v {
        m.insert(
            "$schema".into(),
            serde_json::json!("http://json-schema.org/draft-04/schema#"),
        );
    }
    v
}

/// The filter's copy of the configuration schema: the one shipped in `agent_iam.meta.json`,
/// which a unit test keeps equal to the generated one (`shipped_meta_json_is_current`).
/// Generating it would put schemars and every type's schema code into the `.wasm`.
#[cfg(filter)]
pub fn shipped_config_schema() -> Value {
    serde_json::from_str::<Value>(include_str!("../../agent_iam.meta.json"))
        .ok()
        .and_then(|mut v| v.get_mut("config_schema").map(Value::take))
        .unwrap_or(Value::Null)
}

/// Rewrites the draft-07 constructs schemars emits into their draft-04 forms.
#[cfg(tools)]
fn to_draft4(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(c) = m.remove("const") {
                m.insert("enum".into(), Value::Array(vec![c]));
            }
            // Non-standard formats ("uint64") are not draft 4 and some validators reject them.
            if m.get("format")
                .and_then(Value::as_str)
                .is_some_and(|f| f.starts_with("int") || f.starts_with("uint"))
            {
                m.remove("format");
            }
            for key in ["exclusiveMinimum", "exclusiveMaximum"] {
                if let Some(Value::Number(n)) = m.remove(key) {
                    let bound = if key == "exclusiveMinimum" {
                        "minimum"
                    } else {
                        "maximum"
                    };
                    m.insert(bound.into(), Value::Number(n));
                    m.insert(key.into(), Value::Bool(true));
                }
            }
            // `true` schemas (any value) are not draft 4: use `{}`. Members holding values
            // rather than schemas (`default: true`) stay as they are.
            for (key, child) in m.iter_mut() {
                if matches!(key.as_str(), "default" | "enum" | "examples") {
                    continue;
                }
                if *child == Value::Bool(true) {
                    *child = Value::Object(serde_json::Map::new());
                }
                to_draft4(child);
            }
        }
        Value::Array(items) => {
            for item in items {
                if *item == Value::Bool(true) {
                    *item = Value::Object(serde_json::Map::new());
                }
                to_draft4(item);
            }
        }
        _ => {}
    }
}

/// Structural problems of `value` against `schema`, all of them, each with its JSON path
/// (serde alone would stop at the first).
pub fn structural_problems(schema: &Value, value: &Value) -> Vec<Problem> {
    let mut out = Vec::new();
    check(schema, schema, value, "$", &mut out);
    out
}

fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/definitions/"))
    {
        Some(name) => root
            .get("definitions")
            .and_then(|d| d.get(name))
            .unwrap_or(schema),
        None => schema,
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(expected: &str, v: &Value) -> bool {
    let actual = type_name(v);
    expected == actual || (expected == "number" && actual == "integer")
}

/// Checks `v` at `path` against `schema` (a `$ref` is followed), pushing every problem.
fn check(root: &Value, schema: &Value, v: &Value, path: &str, out: &mut Vec<Problem>) {
    let schema = resolve(root, schema);
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for sub in all {
            check(root, sub, v, path, out);
        }
    }
    if let Some(alts) = schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
    {
        one_of(root, alts, v, path, out);
        return;
    }
    if !value_rules(schema, v, path, out) {
        return;
    }
    match v {
        Value::Object(m) => members(root, schema, m, path, out),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(root, item_schema, item, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn problem(path: &str, message: String) -> Problem {
    Problem {
        path: path.to_owned(),
        message,
    }
}

/// `oneOf` / `anyOf`: one alternative must accept `v`. An optional section (one
/// alternative besides `null`) that is not null is checked as that section, so its
/// problems carry their own paths; otherwise the problem lists the enumerated values.
fn one_of(root: &Value, alts: &[Value], v: &Value, path: &str, out: &mut Vec<Problem>) {
    let ok = alts.iter().any(|alt| {
        let mut scratch = Vec::new();
        check(root, alt, v, path, &mut scratch);
        scratch.is_empty()
    });
    if ok {
        return;
    }
    let allowed: Vec<String> = alts
        .iter()
        .filter_map(|a| resolve(root, a).get("enum").and_then(Value::as_array))
        .flatten()
        .map(Value::to_string)
        .collect();
    let not_null: Vec<&Value> = alts
        .iter()
        .filter(|a| resolve(root, a).get("type").and_then(Value::as_str) != Some("null"))
        .collect();
    match not_null.as_slice() {
        [section] if allowed.is_empty() && !v.is_null() => check(root, section, v, path, out),
        _ => out.push(problem(
            path,
            format!("{v} is not one of {}", allowed.join(", ")),
        )),
    }
}

/// `type`, `enum` and `minimum`. False when the type is wrong (nothing else is checked).
fn value_rules(schema: &Value, v: &Value, path: &str, out: &mut Vec<Problem>) -> bool {
    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(s) => type_ok(s, v),
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).any(|s| type_ok(s, v)),
            _ => true,
        };
        if !ok {
            out.push(problem(
                path,
                format!(
                    "expected {}, got {}",
                    t.as_str().map_or_else(|| t.to_string(), str::to_owned),
                    type_name(v)
                ),
            ));
            return false;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            let allowed: Vec<String> = e.iter().map(Value::to_string).collect();
            out.push(problem(
                path,
                format!("{v} is not one of {}", allowed.join(", ")),
            ));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if n < min {
            out.push(problem(path, format!("{n} is below the minimum {min}")));
        }
    }
    true
}

/// An object's `required` members, then each member against its property schema (or
/// refused by `additionalProperties: false`).
fn members(
    root: &Value,
    schema: &Value,
    m: &serde_json::Map<String, Value>,
    path: &str,
    out: &mut Vec<Problem>,
) {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                out.push(problem(path, format!("missing required field `{r}`")));
            }
        }
    }
    for (k, child) in m {
        let child_path = format!("{path}.{k}");
        match props.and_then(|p| p.get(k)) {
            Some(s) => check(root, s, child, &child_path, out),
            None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                let known: Vec<String> = props
                    .map(|p| p.keys().map(|k| format!("`{k}`")).collect())
                    .unwrap_or_default();
                out.push(problem(
                    &child_path,
                    format!("unknown field `{k}`, expected one of {}", known.join(", ")),
                ));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn draft4_keeps_boolean_values_and_rewrites_boolean_schemas() {
        let mut v = json!({"properties": {"on": {"type": "boolean", "default": true,
                                                 "enum": [true, false]},
                                          "any": true},
                           "additionalProperties": true, "items": [true]});
        to_draft4(&mut v);
        assert_eq!(v["properties"]["on"]["default"], json!(true));
        assert_eq!(v["properties"]["on"]["enum"], json!([true, false]));
        assert_eq!(v["properties"]["any"], json!({}));
        assert_eq!(v["additionalProperties"], json!({}));
        assert_eq!(v["items"], json!([{}]));
    }

    #[test]
    fn schema_is_draft4_and_closed() {
        let s = config_schema_draft4();
        assert_eq!(s["$schema"], "http://json-schema.org/draft-04/schema#");
        assert_eq!(s["additionalProperties"], false);
        assert!(s["required"]
            .as_array()
            .unwrap()
            .contains(&json!("issuers")));
        let text = s.to_string();
        assert!(!text.contains("\"const\""), "{text}");
        assert!(!text.contains("uint64"), "{text}");
    }

    #[test]
    fn shipped_meta_json_is_current() {
        let shipped = include_str!("../../agent_iam.meta.json");
        let shipped: Value = serde_json::from_str(shipped).unwrap();
        assert_eq!(
            shipped,
            kong_meta(),
            "run: cargo run -- generate kong-meta > agent_iam.meta.json"
        );
    }
}
