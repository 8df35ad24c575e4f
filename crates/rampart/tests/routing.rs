//! Virtual hosts, route precedence (as nginx locations), matchers, `return`, error pages and
//! response header edits.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

const CFG: &str = r#"
[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["a.test"]
headers = { add = { "X-Site" = "a" }, remove = ["X-Remove-Me"] }
error_pages = { "404" = "/errors/404.html" }

[[server.route]]
exact = "/"
return = { status = 200, body = "exact root" }

[[server.route]]
prefix = "/static/"
return = { status = 200, body = "prefix static" }

[[server.route]]
prefix = "/static/pri/"
prefix_priority = true
return = { status = 200, body = "priority prefix" }

[[server.route]]
regex = "\\.(png|jpg)$"
return = { status = 200, body = "regex image" }

[[server.route]]
regex = "^/CASE/"
regex_case_insensitive = true
return = { status = 200, body = "case-insensitive regex" }

[[server.route]]
prefix = "/api/"
methods = ["POST"]
return = { status = 201, body = "api post" }

[[server.route]]
prefix = "/api/"
match_headers = { "X-Canary" = "1" }
return = { status = 200, body = "api canary" }

[[server.route]]
prefix = "/api/"
return = { status = 200, body = "api default" }

[[server.route]]
exact = "/go"
return = { status = 301, location = "https://$host:8443$request_uri" }

[[server.route]]
exact = "/vars"
return = { status = 200, body = "$request_method $uri $args $remote_addr" }

[[server.route]]
prefix = "/cached/"
cache_control = "public, max-age=60"
headers = { add = { "X-Route" = "cached", "X-Site" = "overridden" } }
return = { status = 200, body = "cached" }

[[server.route]]
prefix = "/expires/"
expires = "1h"
return = { status = 200, body = "expires" }

[[server.route]]
prefix = "/errors/"
root = "{dir}/errors-root"

[[server.route]]
prefix = "/boom"
return = { status = 503, body = "busy" }
error_pages = { "503" = "/errors/503.html" }

[[server.route]]
prefix = "/plain/"
root = "{dir}/errors-root"
headers = { add = { "X-Plain" = "1" }, remove = ["Last-Modified", "Accept-Ranges", "X-Site"] }

[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["*.wild.test"]
[[server.route]]
return = { status = 200, body = "wildcard $host" }

[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["deeper.x.wild.test"]
[[server.route]]
return = { status = 200, body = "exact beats wildcard" }

[[server]]
listen = ["127.0.0.1:{port}"]
server_names = ["fallback.test"]
default = true
[[server.route]]
return = { status = 200, body = "default server" }
"#;

fn server() -> Rampart {
    let dir = TempDir::new("routing");
    dir.write("errors-root/errors/404.html", "custom not found page");
    dir.write("errors-root/errors/503.html", "custom unavailable page");
    dir.write("errors-root/plain/f.txt", "plain file");
    Rampart::with_config_in(dir, CFG)
}

fn body(
    r: &Rampart,
    method: &str,
    path: &str,
    host: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let mut h = vec![("Host", host)];
    h.extend_from_slice(extra);
    let resp = request(r.port, method, path, &h);
    (resp.status, resp.text())
}

#[test]
fn location_precedence_like_nginx() {
    let r = server();
    let g = |p: &str| body(&r, "GET", p, "a.test", &[]);
    assert_eq!(g("/"), (200, "exact root".into()));
    assert_eq!(g("/static/x.css"), (200, "prefix static".into()));
    // A regex beats a plain prefix…
    assert_eq!(g("/static/x.png"), (200, "regex image".into()));
    // …but not a prefix with priority (nginx ^~).
    assert_eq!(g("/static/pri/x.png"), (200, "priority prefix".into()));
    assert_eq!(g("/case/x"), (200, "case-insensitive regex".into()));
    // Percent-encoding and dot segments are normalized before matching.
    assert_eq!(g("/%73tatic/./a/../x.css"), (200, "prefix static".into()));
}

#[test]
fn method_and_header_matchers() {
    let r = server();
    assert_eq!(
        body(&r, "POST", "/api/x", "a.test", &[("Content-Length", "0")]),
        (201, "api post".into())
    );
    assert_eq!(
        body(&r, "GET", "/api/x", "a.test", &[("X-Canary", "1")]),
        (200, "api canary".into())
    );
    assert_eq!(
        body(&r, "GET", "/api/x", "a.test", &[("X-Canary", "0")]),
        (200, "api default".into())
    );
    assert_eq!(
        body(&r, "GET", "/api/x", "a.test", &[]),
        (200, "api default".into())
    );
}

#[test]
fn virtual_hosts() {
    let r = server();
    assert_eq!(body(&r, "GET", "/", "A.TEST:8080", &[]).1, "exact root");
    assert_eq!(
        body(&r, "GET", "/", "one.wild.test", &[]).1,
        "wildcard one.wild.test"
    );
    assert_eq!(
        body(&r, "GET", "/", "deeper.x.wild.test", &[]).1,
        "exact beats wildcard"
    );
    assert_eq!(body(&r, "GET", "/", "wild.test", &[]).1, "default server");
    assert_eq!(
        body(&r, "GET", "/", "unknown.test", &[]).1,
        "default server"
    );
    // HTTP/2 :authority selects the host too.
    let o = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: x.wild.test",
        &r.url("/"),
    ]);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "wildcard x.wild.test");
}

#[test]
fn redirects_and_variables() {
    let r = server();
    let resp = get(r.port, "/go?x=1", &[("Host", "a.test")]);
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("https://a.test:8443/go?x=1"));
    let (s, b) = body(&r, "GET", "/vars?q=1&b=2", "a.test", &[]);
    assert_eq!((s, b.as_str()), (200, "GET /vars q=1&b=2 127.0.0.1"));
}

#[test]
fn error_pages_server_and_route_level() {
    let r = server();
    let resp = get(r.port, "/nothing-here", &[("Host", "a.test")]);
    assert_eq!(resp.status, 404);
    assert_eq!(resp.text(), "custom not found page");
    let resp = get(r.port, "/boom", &[("Host", "a.test")]);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.text(), "custom unavailable page");
    // Without an error page: the default one.
    let resp = get(r.port, "/nope", &[("Host", "one.wild.test")]);
    assert_eq!(resp.status, 200); // the wildcard server's catch-all route
    let resp = request(r.port, "DELETE", "/errors/404.html", &[("Host", "a.test")]);
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
}

#[test]
fn header_edits_and_caching_headers() {
    let r = server();
    let resp = get(r.port, "/cached/x", &[("Host", "a.test")]);
    assert_eq!(resp.header("cache-control"), Some("public, max-age=60"));
    assert_eq!(resp.header("x-route"), Some("cached"));
    assert_eq!(resp.header("x-site"), Some("overridden"));
    let resp = get(r.port, "/", &[("Host", "a.test")]);
    assert_eq!(resp.header("x-site"), Some("a"));
    let resp = get(r.port, "/expires/x", &[("Host", "a.test")]);
    assert_eq!(resp.header("cache-control"), Some("max-age=3600"));
    let exp = httpdate_secs(resp.header("expires").unwrap());
    let date = httpdate_secs(resp.header("date").unwrap());
    assert!((3599..=3601).contains(&(exp - date)), "{exp} {date}");
}

#[test]
fn response_headers_removed_per_route() {
    let r = server();
    // Another static route keeps the file's headers and the server's added one…
    let kept = get(r.port, "/errors/404.html", &[("Host", "a.test")]);
    assert_eq!(kept.status, 200);
    assert!(kept.header("last-modified").is_some(), "{}", kept.head);
    assert_eq!(kept.header("accept-ranges"), Some("bytes"));
    assert_eq!(kept.header("x-site"), Some("a"));
    // …this one removes them: the handler's and the server's.
    let stripped = get(r.port, "/plain/f.txt", &[("Host", "a.test")]);
    assert_eq!(
        (stripped.status, stripped.text().as_str()),
        (200, "plain file")
    );
    assert_eq!(stripped.header("x-plain"), Some("1"));
    for h in ["last-modified", "accept-ranges", "x-site"] {
        assert_eq!(stripped.header(h), None, "{h}: {}", stripped.head);
    }
}

/// Seconds since the epoch of an IMF-fixdate (enough for comparing two of them).
fn httpdate_secs(s: &str) -> i64 {
    // "Wed, 25 Nov 2026 17:37:45 GMT"
    let p: Vec<&str> = s.split([' ', ':']).collect();
    let day: i64 = p[1].parse().unwrap();
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let mon = months.iter().position(|m| *m == p[2]).unwrap() as i64;
    let year: i64 = p[3].parse().unwrap();
    let (h, m, sec): (i64, i64, i64) = (
        p[4].parse().unwrap(),
        p[5].parse().unwrap(),
        p[6].parse().unwrap(),
    );
    (((year * 12 + mon) * 31 + day) * 24 + h) * 3600 + m * 60 + sec
}
