//! The playground's HTTP server (hyper, HTTP/1.1, on 127.0.0.1 only): the page, its
//! defaults and nothing else.
//!
//! hyper parses the request; its parser already answers 400 to a head another server
//! could read in two ways (a folded header line, whitespace before the colon). Here: a
//! request needs exactly one `Host` (RFC 9112 §3.2), and it must be this server's own
//! origin: a foreign one is a DNS-rebinding attempt by some other web page to read the
//! configuration and keys.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

/// What the server serves.
pub struct Site {
    /// The built page: `index.html`, the browser module and its bindings.
    pub dir: PathBuf,
    /// `/defaults.json`.
    pub defaults: String,
    /// The port it listens on (its origin is `127.0.0.1:PORT` or `localhost:PORT`).
    pub port: u16,
}

/// Serves `site` on `listener` until the process ends.
pub fn serve(listener: std::net::TcpListener, site: Site) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("playground server: {e}"))?;
    runtime.block_on(accept_loop(listener, Arc::new(site)))
}

async fn accept_loop(listener: std::net::TcpListener, site: Arc<Site>) -> Result<(), String> {
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("playground server: {e}"))?;
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("playground server: {e}"))?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Out of file descriptors or a connection reset before accept: try again.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let site = site.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = answer(&site, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            // A client that stops sending mid-head is dropped after 5 s.
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(5))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The answer to one request: `GET /` (the page), `/defaults.json`, or a file of the site
/// directory by its plain name (letters, digits, `_`, `-`, `.`; not starting with `.`).
pub fn answer<B>(site: &Site, req: &Request<B>) -> Response<Full<Bytes>> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) => return plain(StatusCode::BAD_REQUEST, "no Host header\n"),
        (Some(_), Some(_)) => return plain(StatusCode::BAD_REQUEST, "more than one Host header\n"),
        (Some(h), None) => h,
    };
    let own = [
        format!("127.0.0.1:{}", site.port),
        format!("localhost:{}", site.port),
    ];
    let host_ok = host
        .to_str()
        .is_ok_and(|h| own.contains(&h.to_ascii_lowercase()));
    if !host_ok {
        return plain(StatusCode::MISDIRECTED_REQUEST, "wrong host\n");
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET only\n");
    }
    // Origin form only: an absolute URI would name an authority besides `Host`.
    if req.uri().authority().is_some() || !req.uri().path().starts_with('/') {
        return plain(
            StatusCode::BAD_REQUEST,
            "the request target must be a path\n",
        );
    }
    let name = req.uri().path().strip_prefix('/').unwrap_or_default();
    let name = if name.is_empty() { "index.html" } else { name };
    if name == "defaults.json" {
        return body(
            StatusCode::OK,
            "application/json",
            site.defaults.clone().into_bytes(),
        );
    }
    let plain_name = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !name.starts_with('.');
    if !plain_name {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    match std::fs::read(site.dir.join(name)) {
        Ok(bytes) => body(StatusCode::OK, content_type(name), bytes),
        Err(_) => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    body(status, "text/plain", text.as_bytes().to_vec())
}

fn body(status: StatusCode, kind: &'static str, bytes: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn content_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json") => "application/json",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    /// A server on a free port with a two-file site; returns its port.
    fn start() -> u16 {
        let dir = std::env::temp_dir().join(format!("agent-iam-site-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html>").unwrap();
        std::fs::write(dir.join("app.js"), "1").unwrap();
        std::fs::write(dir.join(".hidden"), "secret").unwrap();
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let site = Site {
            dir,
            defaults: "{\"config\":1}".into(),
            port,
        };
        std::thread::spawn(move || serve(listener, site));
        port
    }

    /// Sends `head` (request line and header lines, `\r\n`-separated) and returns the
    /// status line and the body.
    fn send(port: u16, head: &str) -> (String, String) {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "{head}\r\nconnection: close\r\n\r\n").unwrap();
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        let status = out.lines().next().unwrap_or_default().to_owned();
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
        (status, body)
    }

    #[test]
    fn the_playground_answers_exactly_one_host_of_its_own_origin() {
        let port = start();
        let own = format!("host: 127.0.0.1:{port}");
        let get = |lines: &str| send(port, &format!("GET /defaults.json HTTP/1.1\r\n{lines}"));
        assert_eq!(
            get(&own),
            ("HTTP/1.1 200 OK".into(), "{\"config\":1}".into())
        );
        assert_eq!(
            get(&format!("x-a: 1\r\nhOsT:localhost:{port}  ")).0,
            "HTTP/1.1 200 OK"
        );
        let foreign = format!("host: attacker.example:{port}");
        assert!(get(&foreign).0.starts_with("HTTP/1.1 421"));
        for bad in [
            format!("{foreign}\r\n{own}"),
            format!("{own}\r\n{foreign}"),
            format!("x-a: 1\r\n {own}"),
            format!("{foreign}\r\n {own}"),
            format!("host : 127.0.0.1:{port}"),
            "x-a: 1".to_owned(),
            "no colon".to_owned(),
        ] {
            let (status, body) = get(&bad);
            assert!(status.starts_with("HTTP/1.1 400"), "{bad:?}: {status}");
            assert!(!body.contains("config"), "{bad:?}");
        }
        // An absolute URI names an authority of its own.
        let absolute = send(
            port,
            &format!("GET http://attacker.example/defaults.json HTTP/1.1\r\n{own}"),
        );
        assert!(absolute.0.starts_with("HTTP/1.1 400"), "{absolute:?}");
    }

    #[test]
    fn the_playground_serves_only_its_plain_files_and_only_get() {
        let port = start();
        let own = format!("host: 127.0.0.1:{port}");
        let req = |m: &str, p: &str| send(port, &format!("{m} {p} HTTP/1.1\r\n{own}"));
        assert_eq!(
            req("GET", "/"),
            ("HTTP/1.1 200 OK".into(), "<!doctype html>".into())
        );
        assert_eq!(req("GET", "/app.js?v=1").1, "1");
        assert_eq!(
            req("HEAD", "/app.js"),
            ("HTTP/1.1 200 OK".into(), String::new())
        );
        for path in [
            "/../Cargo.toml",
            "/%2e%2e/Cargo.toml",
            "/.hidden",
            "/sub/dir.js",
            "/nope",
        ] {
            assert!(req("GET", path).0.starts_with("HTTP/1.1 404"), "{path}");
        }
        assert!(req("POST", "/").0.starts_with("HTTP/1.1 405"));
    }
}
