//! Config errors carry file:line:column and suggestions, and every error is reported.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use rampart_config::{parse_str, EMBEDDED_DEFAULT};

fn errors(text: &str) -> Vec<String> {
    match parse_str(text, Path::new("t.toml")) {
        Ok(_) => vec![],
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn embedded_default_is_valid() {
    let cfg = parse_str(EMBEDDED_DEFAULT, Path::new("<embedded>")).unwrap();
    assert_eq!(cfg.servers.len(), 1);
    assert_eq!(cfg.admin.listen.as_deref(), Some("127.0.0.1:9901"));
}

/// A config file gets no admin listener unless it asks for one, and nginx's limits.
#[test]
fn config_files_default_to_no_admin_and_nginx_limits() {
    let cfg = parse_str(
        "[[server]]\nlisten = [\"127.0.0.1:1\"]\n[[server.route]]\nreturn = { status = 200 }\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(cfg.admin.listen, None);
    let l = &cfg.limits;
    assert_eq!(l.max_header_size.0, 32 << 10);
    assert_eq!(l.max_uri_length.0, 8 << 10);
    assert_eq!(l.max_body_size.0, 1 << 20);
    assert_eq!(l.header_read_timeout.0.as_secs(), 60);
    assert_eq!(l.keepalive_timeout.0.as_secs(), 75);
    assert_eq!(l.keepalive_requests, 1000);
    // Units: durations and sizes as written in the file.
    let cfg = parse_str(
        "[limits]\nkeepalive_timeout = \"1m30s\"\nmax_body_size = \"10MiB\"\n[[server]]\nlisten = [\"127.0.0.1:1\"]\n[[server.route]]\nreturn = { status = 200 }\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(cfg.limits.keepalive_timeout.0.as_secs(), 90);
    assert_eq!(cfg.limits.max_body_size.0, 10 << 20);
}

#[test]
fn misspelt_keys_are_all_reported_with_location_and_suggestion() {
    let text = "[global]\nlog_levle = \"info\"\n\n[[server]]\nlisten = [\"127.0.0.1:1\"]\nserver_name = [\"a\"]\n\n[[server.route]]\nprefix = \"/\"\nreturn = { status = 200 }\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(
        errs[0].starts_with("t.toml:2:1: unknown key `log_levle`"),
        "{}",
        errs[0]
    );
    assert!(errs[0].contains("did you mean `log_level`"), "{}", errs[0]);
    assert!(
        errs[1].starts_with("t.toml:6:1: unknown key `server_name`"),
        "{}",
        errs[1]
    );
    assert!(
        errs[1].contains("did you mean `server_names`"),
        "{}",
        errs[1]
    );
}

#[test]
fn syntax_errors_point_at_the_spot() {
    let errs = errors("[global\nworkers = 1\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("t.toml:1:"), "{}", errs[0]);
}

#[test]
fn bad_units_and_values() {
    let errs = errors("[limits]\nheader_read_timeout = \"5 parsecs\"\n[[server]]\n[[server.route]]\nreturn = { status = 200 }\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:2:"), "{}", errs[0]);
    assert!(errs[0].contains("unknown unit"), "{}", errs[0]);
}

#[test]
fn semantic_errors_are_located() {
    let text = r#"
[[server]]
listen = ["127.0.0.1:8080"]
server_names = ["a.test"]

[[server.route]]
regex = "^/(unclosed"
return = { status = 200 }

[[server.route]]
prefix = "/files/"
root = "/definitely/not/here"

[[server.route]]
prefix = "/r"
return = { status = 301 }

[[server.route]]
prefix = "/m"
methods = ["GTE"]
return = { status = 204 }

[[server]]
listen = ["127.0.0.1:8080"]
server_names = ["a.test"]
[[server.route]]
builtin = "welcome"
"#;
    let errs = errors(text);
    assert_eq!(errs.len(), 5, "{errs:#?}");
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:7:9: invalid regex")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:12:8: root /definitely/not/here")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:16:10: a 301 redirect needs `location`")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.contains("unknown method \"GTE\"") && e.contains("did you mean `GET`")),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.starts_with("t.toml:25:16: duplicate server name")),
        "{errs:#?}"
    );
}

#[test]
fn documented_example_uses_only_valid_keys() {
    // docs/config.md's full example must stay in sync with the model: the only problems allowed
    // are its example directories, which do not exist here.
    let doc = include_str!("../../../docs/config.md");
    let start = doc.find("## A full annotated example").unwrap();
    let block = &doc[start..];
    let body = block
        .split("```toml\n")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    match parse_str(body, Path::new("config.md")) {
        Ok(_) => {}
        Err(e) => {
            for err in &e.0 {
                assert!(err.msg.contains("No such file or directory"), "{err}");
            }
        }
    }
}

#[test]
fn proxy_protocol_must_agree_per_listen_address() {
    let text = "[[server]]\nlisten = [\"127.0.0.1:1\", \"127.0.0.1:2\"]\nserver_names = [\"a\"]\nproxy_protocol = true\n[[server.route]]\nreturn = { status = 200 }\n\n[[server]]\nlisten = [\"127.0.0.1:2\"]\nserver_names = [\"b\"]\n[[server.route]]\nreturn = { status = 200 }\n\n[[server]]\nlisten = [\"127.0.0.1:1\"]\nserver_names = [\"c\"]\nproxy_protocol = true\n[[server.route]]\nreturn = { status = 200 }\n";
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:8:"), "{}", errs[0]);
    assert!(
        errs[0].contains("proxy_protocol = false here but true on server #1")
            && errs[0].contains("127.0.0.1:2"),
        "{}",
        errs[0]
    );
    let errs = errors("[upstream.app]\nservers = [\"127.0.0.1:9\"]\nsend_proxy_protocol = \"v3\"\n[[server]]\n[[server.route]]\nproxy = \"app\"\n");
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:3:"), "{}", errs[0]);
}

#[test]
fn forward_proxy_routes_are_checked() {
    let ok = "[[server]]\n[[server.route]]\nforward_proxy = { allow_hosts = [\"*.example.com\", \"10.0.0.0/8\", \"*\"] }\n";
    assert!(errors(ok).is_empty(), "{:#?}", errors(ok));
    // Defaults: HTTPS only, 10 s to connect, 10 min idle.
    let cfg = parse_str(ok, Path::new("t.toml")).unwrap();
    let f = cfg.servers[0].routes[0].forward_proxy.clone().unwrap();
    assert_eq!(f.allow_ports, vec![443]);
    assert_eq!(f.connect_timeout.0.as_secs(), 10);
    assert_eq!(f.idle_timeout.0.as_secs(), 600);

    let errs = errors("[[server]]\n[[server.route]]\nforward_proxy = { allow_ports = [] }\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("allow_hosts is required")));
    assert!(errs.iter().any(|e| e.contains("allow_ports is empty")));
    let errs = errors("[[server]]\n[[server.route]]\nprefix = \"/\"\nforward_proxy = { allow_hosts = [\"a b\"], alow_ports = [1] }\n");
    assert!(
        errs.iter()
            .any(|e| e.contains("did you mean `allow_ports`")),
        "{errs:#?}"
    );
    let errs = errors("[[server]]\n[[server.route]]\nprefix = \"/\"\nforward_proxy = { allow_hosts = [\"a b\"] }\n");
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("CONNECT requests only")));
    assert!(errs.iter().any(|e| e.contains("is not a host name")));
    let errs = errors("[[server]]\n[[server.route]]\nproxy = \"http://a:1\"\nforward_proxy = { allow_hosts = [\"*\"] }\n");
    assert!(
        errs.iter().any(|e| e.contains("exactly one handler")),
        "{errs:#?}"
    );
}

#[test]
fn resolvers_are_checked() {
    let up = "[[server]]\n[[server.route]]\nproxy = \"app\"\n[upstream.app]\nservers = [\"127.0.0.1:1\"]\n";
    let ok = format!("[global]\nresolver = {{ servers = [\"127.0.0.1:5353\", \"10.0.0.2\"] }}\n{up}resolver = {{ servers = [\"::1\"], valid = \"30s\" }}\n");
    assert!(errors(&ok).is_empty(), "{:#?}", errors(&ok));
    let cfg = parse_str(&ok, Path::new("t.toml")).unwrap();
    let r = cfg.global.resolver.unwrap();
    assert_eq!(r.min_ttl.0.as_secs(), 1);
    assert_eq!(r.max_ttl.0.as_secs(), 3600);
    assert_eq!(r.timeout.0.as_secs(), 5);
    assert!(r.valid.is_none());

    let bad = format!("{up}resolver = {{ servers = [\"dns.example.com\"], min_ttl = \"0s\", max_ttl = \"1s\", ttl = 1 }}\n");
    let errs = errors(&bad);
    assert!(
        errs.iter().any(|e| e.contains("unknown key `ttl`")),
        "{errs:#?}"
    );
    let bad = format!("{up}resolver = {{ servers = [\"dns.example.com\"], min_ttl = \"10s\", max_ttl = \"1s\" }}\n");
    let errs = errors(&bad);
    assert_eq!(errs.len(), 2, "{errs:#?}");
    assert!(errs.iter().any(|e| e.contains("not an IP address")));
    assert!(errs
        .iter()
        .any(|e| e.contains("max_ttl is less than min_ttl")));
    let errs = errors("[global]\nresolver = { servers = [] }\n[[server]]\n[[server.route]]\nreturn = { status = 200 }\n");
    assert!(
        errs.iter()
            .any(|e| e.contains("a resolver needs `servers`")),
        "{errs:#?}"
    );
}

#[test]
fn upstream_protocol_is_checked() {
    let base = "[[server]]\n[[server.route]]\nproxy = \"g\"\n[upstream.g]\n";
    // Valid: both values, and grpc:// addresses.
    for ok in [
        "servers = [\"127.0.0.1:50051\"]\nprotocol = \"h2c\"\n",
        "servers = [\"127.0.0.1:8080\"]\nprotocol = \"http1\"\n",
        "servers = [\"grpc://127.0.0.1:50051\", \"grpc://localhost:50052/\"]\n",
    ] {
        let errs = errors(&format!("{base}{ok}"));
        assert!(errs.is_empty(), "{ok}: {errs:#?}");
    }
    let errs = errors(&format!(
        "{base}servers = [\"127.0.0.1:1\"]\nprotocol = \"http2\"\n"
    ));
    assert_eq!(errs.len(), 1, "{errs:#?}");
    assert!(errs[0].starts_with("t.toml:6:"), "{}", errs[0]);
    assert!(
        errs[0].contains("unknown value `http2` (valid: http1, h2c)"),
        "{}",
        errs[0]
    );
    for (bad, says) in [
        ("grpc://127.0.0.1", "missing port"),
        ("grpc://127.0.0.1:50051/svc", "not a URL with a path"),
        ("grpcs://127.0.0.1:443", "TLS"),
        ("grpc://unix:/run/g.sock", "grpc://host:port"),
    ] {
        let errs = errors(&format!("{base}servers = [\"{bad}\"]\n"));
        assert_eq!(errs.len(), 1, "{bad}: {errs:#?}");
        assert!(errs[0].contains(says), "{bad}: {}", errs[0]);
    }
}
