//! Building regorus values: from serde_json without a text round trip, and the small
//! constructors the policy input is assembled with.

use std::collections::BTreeMap;

use regorus::Value;

/// serde_json → regorus without a text round trip.
pub fn to_rego(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::from(*b),
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                number(n.as_f64().unwrap_or(0.0))
            }
        }
        serde_json::Value::String(s) => Value::from(s.as_str()),
        serde_json::Value::Array(a) => Value::from(a.iter().map(to_rego).collect::<Vec<_>>()),
        serde_json::Value::Object(m) => to_rego_object(m),
    }
}

/// 2^63 and 2^64, exactly.
const I64_END: f64 = 9_223_372_036_854_775_808.0;
const U64_END: f64 = 18_446_744_073_709_551_616.0;

/// A JSON float as the policy sees it: an integral value that fits a 64-bit integer
/// (`1.0`, `-0.0`, `1e16`) as that integer (`1`, `0`, `10000000000000000`), so one number
/// has one form, whichever way a client spelled it (the decision cache compares values by
/// their form, and regorus's arithmetic differs between the two).
fn number(f: f64) -> Value {
    if f.fract() == 0.0 {
        if (-I64_END..I64_END).contains(&f) {
            return Value::from(f as i64);
        }
        if (0.0..U64_END).contains(&f) {
            return Value::from(f as u64);
        }
    }
    Value::from(f)
}

/// A JSON object → regorus object, without cloning the source map first.
pub fn to_rego_object(m: &serde_json::Map<String, serde_json::Value>) -> Value {
    Value::from(
        m.iter()
            .map(|(k, v)| (Value::from(k.as_str()), to_rego(v)))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Builds a regorus object from `(key, value)` pairs.
pub fn object<I: IntoIterator<Item = (&'static str, Value)>>(pairs: I) -> Value {
    Value::from(
        pairs
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// Strings → regorus array.
pub fn strings<'a, I: IntoIterator<Item = &'a str>>(items: I) -> Value {
    Value::from(items.into_iter().map(Value::from).collect::<Vec<_>>())
}

/// Optional string → regorus string or null.
pub fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, Value::from)
}
