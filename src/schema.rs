//! JSON Schema (draft 4, what Kong's `config_schema` expects) generated from the config
//! types, so the schema Kong validates with can never drift from what the filter parses.

use serde_json::{json, Map, Value};

use crate::config::PluginConfig;

/// `config_schema` for Kong's `<filter>.meta.json`.
pub fn config_schema_draft4() -> Value {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<PluginConfig>();
    let mut v = schema.to_value();
    to_draft4(&mut v);
    if let Value::Object(m) = &mut v {
        m.insert(
            "$schema".into(),
            json!("http://json-schema.org/draft-04/schema#"),
        );
    }
    v
}

/// The whole `agent_iam.meta.json` document.
pub fn kong_meta() -> Value {
    json!({ "config_schema": config_schema_draft4() })
}

/// Rewrites the draft-07 constructs schemars emits into their draft-04 forms.
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
            // `true` schemas (any value) are not draft 4: use `{}`.
            for child in m.values_mut() {
                if *child == Value::Bool(true) {
                    *child = Value::Object(Map::new());
                }
                to_draft4(child);
            }
        }
        Value::Array(items) => {
            for item in items {
                if *item == Value::Bool(true) {
                    *item = Value::Object(Map::new());
                }
                to_draft4(item);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let shipped = include_str!("../agent_iam.meta.json");
        let shipped: Value = serde_json::from_str(shipped).unwrap();
        assert_eq!(
            shipped,
            kong_meta(),
            "run: cargo run -- generate kong-meta > agent_iam.meta.json"
        );
    }
}
