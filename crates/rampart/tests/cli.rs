//! The command line: version, check, the embedded default, serve.
#![allow(clippy::unwrap_used)]
mod common;
use common::*;

#[test]
fn version_prints() {
    let o = rampart(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("rampart "));
}

#[test]
fn check_accepts_a_valid_file() {
    let d = TempDir::new("check-ok");
    let p = d.write(
        "ok.toml",
        "[[server]]\nlisten = [\"127.0.0.1:1\"]\n[[server.route]]\nreturn = { status = 204 }\n",
    );
    let o = rampart(&["check", "-c", p.to_str().unwrap()]);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (1 server(s), 1 route(s))"));
}

#[test]
fn check_reports_every_error_with_location_and_suggestion() {
    let d = TempDir::new("check-bad");
    let p = d.write(
        "bad.toml",
        "[limits]\nmax_body_sise = \"1MiB\"\n\n[[server]]\nlisten = [\"127.0.0.1:1\"]\n[[server.route]]\nprefix = \"/\"\nroot = \"/no/such/dir\"\n[[server.route]]\nregex = \"(\"\nreturn = { status = 200 }\n",
    );
    let o = rampart(&["check", "-c", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    let f = p.display().to_string();
    assert!(
        err.contains(&format!("{f}:2:1: unknown key `max_body_sise`")),
        "{err}"
    );
    assert!(err.contains("did you mean `max_body_size`"), "{err}");
    assert!(
        err.contains(&format!("{f}:8:8: root /no/such/dir")),
        "{err}"
    );
    assert!(err.contains(&format!("{f}:10:9: invalid regex")), "{err}");
    assert!(err.contains("3 error(s)"), "{err}");
}

#[test]
fn check_missing_file_fails() {
    let o = rampart(&["check", "-c", "/no/such/rampart.toml"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot read /no/such/rampart.toml"));
}

#[test]
fn embedded_default_serves_welcome_page_and_admin() {
    // The embedded default listens on fixed ports 8080/9901; run it via a copy with free ports
    // to prove the same content, and check the embedded text itself parses.
    let cfg = rampart_config_default()
        .replace("127.0.0.1:8080", "127.0.0.1:{port}")
        .replace("127.0.0.1:9901", "127.0.0.1:{admin}");
    let r = Rampart::with_config(&cfg);
    let resp = get(r.port, "/", &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("Rampart is running"));
    assert!(resp.text().contains("rampart serve"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(resp.header("server"), Some("rampart"));
    assert!(resp.header("date").is_some());
    assert_eq!(resp.header("x-request-id").map(|v| v.len()), Some(32));
    assert!(r
        .stderr()
        .contains(&format!("listening on http://127.0.0.1:{}", r.port)));
    let h = get(r.admin_port, "/healthz", &[]);
    assert_eq!((h.status, h.text().as_str()), (200, "ok\n"));
}

#[test]
fn no_arguments_runs_the_embedded_default() {
    // In an empty directory (no rampart.toml) `rampart` alone uses the embedded config.
    let d = TempDir::new("noargs");
    if std::net::TcpStream::connect("127.0.0.1:8080").is_ok() {
        eprintln!("port 8080 busy; skipping");
        return;
    }
    let mut child = std::process::Command::new(BIN)
        .current_dir(d.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ok = wait_port(8080);
    let resp = if ok { Some(get(8080, "/", &[])) } else { None };
    let _ = child.kill();
    let _ = child.wait();
    let resp = resp.expect("rampart with no arguments should listen on 127.0.0.1:8080");
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("Rampart is running"));
}

fn rampart_config_default() -> String {
    include_str!("../../rampart-config/src/default.toml").to_string()
}

#[test]
fn serve_lists_and_serves_on_ipv6_too() {
    let d = TempDir::new("serve");
    d.write("hello.txt", "hello world\n");
    d.write("sub/a.txt", "a");
    let port6 = free_port();
    let r = Rampart::serve(d, &["--browse", "--listen", &format!("[::1]:{port6}")]);
    let resp = get(r.port, "/hello.txt", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello world\n");
    assert!(resp
        .header("content-type")
        .unwrap()
        .starts_with("text/plain"));
    let o = curl(&["-g", &format!("http://[::1]:{port6}/hello.txt")]);
    assert_eq!(o.stdout, b"hello world\n");
    let listing = get(r.port, "/sub/", &[]);
    assert_eq!(listing.status, 200);
    assert!(listing.text().contains("a.txt"));
}

#[test]
fn serve_rejects_missing_directory() {
    let o = rampart(&["serve", "/no/such/dir", "--listen", "127.0.0.1:1"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/dir"));
}

#[test]
fn completions_and_man_page_are_generated_from_the_cli() {
    let o = rampart(&["completions", "bash"]);
    assert!(o.status.success());
    let bash = String::from_utf8_lossy(&o.stdout);
    assert!(bash.contains("_rampart()"), "{bash}");
    for sub in [
        "serve",
        "proxy",
        "check",
        "reload",
        "completions",
        "manpage",
    ] {
        assert!(bash.contains(sub), "bash completion lacks {sub}");
    }
    let o = rampart(&["completions", "zsh"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("#compdef rampart"));
    let o = rampart(&["completions", "tcsh"]);
    assert_eq!(o.status.code(), Some(2), "unknown shell is a usage error");
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid value 'tcsh'"));

    let o = rampart(&["manpage"]);
    assert!(o.status.success());
    let man = String::from_utf8_lossy(&o.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH rampart 1"),
        "{man}"
    );
    assert!(man.contains(".TH rampart 1"), "{man}");
    assert!(man.contains("serve"), "{man}");
}
