//! What a policy said: the decision document (a bool or `{"allow", "reason", "status",
//! "headers"}`) read strictly into a [`Verdict`]. Anything unexpected is an error (deny).

use regorus::value::Object;
use regorus::Value;

/// What the policy said.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Allow {
        headers: Vec<(String, String)>,
    },
    Deny {
        reason: Option<String>,
        status: u16,
    },
    /// Undefined, wrong type or evaluation error: deny with `policy.error`.
    Error(String),
    /// The evaluation budget ran out: deny with `policy.limit`.
    Limit,
}

/// No `_`: CGI and WSGI upstreams read `x_a` and `x-a` as the same variable.
pub(super) fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Headers a policy may never set: hop-by-hop, routing and credentials.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "cookie",
];

/// The decision document → verdict. Anything unexpected is an error (deny).
pub fn interpret(v: &Value) -> Verdict {
    match v {
        Value::Bool(true) => Verdict::Allow {
            headers: Vec::new(),
        },
        Value::Bool(false) => Verdict::Deny {
            reason: None,
            status: 403,
        },
        Value::Undefined => Verdict::Error("decision is undefined".into()),
        Value::Object(obj) => decision_object(obj).unwrap_or_else(Verdict::Error),
        other => Verdict::Error(format!(
            "decision must be a boolean or an object, got {}",
            type_name(other)
        )),
    }
}

/// `{"allow", "reason", "status", "headers"}`: no other member, each one well-formed
/// (checked in this order, whatever `allow` says).
fn decision_object(obj: &Object) -> Result<Verdict, String> {
    for k in obj.keys() {
        match k.as_string().map(|s| s.as_ref()) {
            Ok("allow" | "reason" | "status" | "headers") => {}
            _ => return Err(format!("unknown decision member {k}")),
        }
    }
    let get = |name: &str| obj.get(&Value::from(name));
    let allow = match get("allow") {
        Some(Value::Bool(b)) => *b,
        _ => return Err("decision.allow must be a boolean".into()),
    };
    let reason = decision_reason(get("reason"))?;
    let status = match get("status") {
        None => 403,
        Some(n) => match n.as_u64() {
            Ok(s) if (400..=599).contains(&s) => s as u16,
            _ => return Err("decision.status must be an integer in 400..=599".into()),
        },
    };
    let headers = match get("headers") {
        None => Vec::new(),
        Some(Value::Object(h)) => decision_headers(h)?,
        Some(_) => return Err("decision.headers must be an object".into()),
    };
    Ok(if allow {
        Verdict::Allow { headers }
    } else {
        Verdict::Deny { reason, status }
    })
}

/// `reason`: a short printable string without quotes or backslashes (it goes into the
/// response body and the audit event).
fn decision_reason(reason: Option<&Value>) -> Result<Option<String>, String> {
    match reason {
        None => Ok(None),
        Some(Value::String(s))
            if !s.is_empty()
                && s.len() <= 128
                && s.bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') =>
        {
            Ok(Some(s.to_string()))
        }
        Some(_) => Err("decision.reason must be a short printable string".into()),
    }
}

/// `headers`: names a policy may set, values without control characters (tab allowed).
fn decision_headers(h: &Object) -> Result<Vec<(String, String)>, String> {
    let mut headers = Vec::new();
    for (k, val) in h.iter() {
        let (Ok(name), Ok(value)) = (k.as_string(), val.as_string()) else {
            return Err("decision.headers must map strings to strings".into());
        };
        if !is_header_name(name) || RESERVED_HEADERS.contains(&name.as_ref()) {
            return Err(format!("decision.headers: `{name}` cannot be set"));
        }
        if value.len() > 4096 || value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
            return Err(format!("decision.headers: bad value for `{name}`"));
        }
        headers.push((name.to_string(), value.to_string()));
    }
    Ok(headers)
}

pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Set(_) => "set",
        Value::Object(_) => "object",
        Value::Undefined => "undefined",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(json: &str) -> Verdict {
        interpret(&Value::from_json_str(json).unwrap())
    }

    /// The first problem found is the one reported, members in a fixed order whatever
    /// `allow` says (the message goes into the log line and the audit event).
    #[test]
    fn decision_errors_say_what_is_wrong() {
        for (doc, message) in [
            ("null", "decision must be a boolean or an object, got null"),
            (
                r#"{"allow":true,"extra":1}"#,
                "unknown decision member \"extra\"",
            ),
            (r#"{"reason":"x"}"#, "decision.allow must be a boolean"),
            (
                r#"{"allow":false,"reason":7,"status":999}"#,
                "decision.reason must be a short printable string",
            ),
            (
                r#"{"allow":false,"status":999,"headers":5}"#,
                "decision.status must be an integer in 400..=599",
            ),
            (
                r#"{"allow":true,"headers":[]}"#,
                "decision.headers must be an object",
            ),
            (
                r#"{"allow":true,"headers":{"x-a":1}}"#,
                "decision.headers must map strings to strings",
            ),
            (
                r#"{"allow":true,"headers":{"X-A":"v"}}"#,
                "decision.headers: `X-A` cannot be set",
            ),
            (
                r#"{"allow":true,"headers":{"x-a":"a\r\nb"}}"#,
                "decision.headers: bad value for `x-a`",
            ),
        ] {
            assert_eq!(verdict(doc), Verdict::Error(message.into()), "{doc}");
        }
        assert_eq!(
            verdict(r#"{"allow":false,"reason":"ok","headers":{"x-b":"v\tw"}}"#),
            Verdict::Deny {
                reason: Some("ok".into()),
                status: 403
            }
        );
        assert_eq!(
            interpret(&Value::Undefined),
            Verdict::Error("decision is undefined".into())
        );
    }
}
