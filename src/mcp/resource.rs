//! OAuth 2.0 Protected Resource Metadata (RFC 9728) for the resource the routes protect.

use serde_json::{json, Value};

/// The validated `protected_resource`.
#[derive(Debug, Clone)]
pub struct ProtectedResource {
    pub resource: String,
    pub authorization_servers: Vec<String>,
    pub resource_name: Option<String>,
    /// Where clients fetch the metadata (RFC 9728 §3.1), and the path the filter answers.
    pub metadata_url: String,
    pub metadata_path: String,
}

const WELL_KNOWN: &str = "/.well-known/oauth-protected-resource";

/// RFC 9728 §3.1: the well-known segment goes between the host and the resource's path
/// (`https://api.test/mcp` → `https://api.test/.well-known/oauth-protected-resource/mcp`).
/// Returns the URL and its path.
pub fn metadata_location(resource: &str) -> Result<(String, String), String> {
    let rest = resource
        .strip_prefix("https://")
        .ok_or_else(|| format!("\"{resource}\" is not an https URL"))?;
    // The URL is quoted into `WWW-Authenticate` challenges: no `"` or `\\` either.
    if rest.contains(['?', '#', '"', '\\']) || rest.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "\"{resource}\" must have no query, fragment, quotes, backslashes, spaces or control characters"
        ));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains('@') {
        return Err(format!("\"{resource}\" has no host (or carries user info)"));
    }
    let path = path.trim_end_matches('/');
    let metadata_path = format!("{WELL_KNOWN}{path}");
    Ok((format!("https://{host}{metadata_path}"), metadata_path))
}

impl ProtectedResource {
    /// The metadata document, with the scopes the routes use (`scopes_supported`).
    pub fn document(&self, scopes_supported: &[String]) -> Value {
        let mut doc = json!({
            "resource": self.resource,
            "authorization_servers": self.authorization_servers,
            "scopes_supported": scopes_supported,
            "bearer_methods_supported": ["header"],
        });
        if let (Some(name), Some(obj)) = (&self.resource_name, doc.as_object_mut()) {
            obj.insert("resource_name".into(), json!(name));
        }
        doc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_url_comes_from_the_resource_never_the_request() {
        assert_eq!(
            metadata_location("https://api.example.test/mcp").unwrap(),
            (
                "https://api.example.test/.well-known/oauth-protected-resource/mcp".into(),
                "/.well-known/oauth-protected-resource/mcp".into()
            )
        );
        assert_eq!(
            metadata_location("https://api.example.test").unwrap().1,
            "/.well-known/oauth-protected-resource"
        );
        assert_eq!(
            metadata_location("https://api.example.test/").unwrap().1,
            "/.well-known/oauth-protected-resource"
        );
        for bad in [
            "http://api.test/mcp",
            "https://api.test/mcp?x=1",
            "https://api.test/mcp#f",
            "https:///mcp",
            "https://user@api.test/mcp",
            "https://api.test/m cp",
        ] {
            assert!(metadata_location(bad).is_err(), "{bad}");
        }
    }
}
