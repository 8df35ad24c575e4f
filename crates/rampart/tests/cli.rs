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
    // What Rampart is, how to serve a folder, proxy, and where the docs are.
    assert!(resp.text().contains("web server, reverse proxy"));
    assert!(resp.text().contains("rampart proxy --to"));
    assert!(resp.text().contains("docs/config.md"));
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

#[test]
fn no_arguments_uses_rampart_toml_in_the_current_directory() {
    let d = TempDir::new("noargs-toml");
    let port = free_port();
    d.write(
        "rampart.toml",
        render(
            "[[server]]\nlisten = [\"127.0.0.1:{port}\"]\n[[server.route]]\nreturn = { status = 200, body = \"from ./rampart.toml\" }\n",
            port,
            0,
            d.path(),
        ),
    );
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(d.path());
    let r = Rampart::start(cmd, port, d);
    let resp = get(r.port, "/", &[]);
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "from ./rampart.toml")
    );
    assert!(
        r.stderr()
            .contains(&format!("listening on http://127.0.0.1:{port}")),
        "{}",
        r.stderr()
    );
}

#[test]
fn serve_defaults_to_the_current_directory() {
    let d = TempDir::new("serve-cwd");
    d.write("here.txt", "served from the working directory");
    let port = free_port();
    let mut cmd = std::process::Command::new(BIN);
    cmd.current_dir(d.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
    let r = Rampart::start(cmd, port, d);
    let resp = get(r.port, "/here.txt", &[]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"served from the working directory");
}

/// Threads of a process whose name is `name` (from /proc/PID/task/*/comm).
fn threads_named(pid: u32, name: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("comm")).ok())
        .filter(|c| c.trim_end() == name)
        .count()
}

/// Worker threads default to the CPUs in the affinity mask (`taskset -c 0` runs one worker,
/// the shared benchmark relies on it); `workers` in the config and `--workers` override it.
#[test]
fn workers_follow_the_affinity_mask() {
    let cfg = "[global]\nworkers = WORKERS\n[[server]]\nlisten = [\"127.0.0.1:{port}\"]\naccess_log = { path = \"off\" }\n[[server.route]]\nreturn = { status = 200, body = \"ok\" }\n";
    let start = |cpus: &str, workers: usize, extra: &[&str]| {
        let d = TempDir::new("affinity");
        let port = free_port();
        let text = render(cfg, port, 0, d.path()).replace("WORKERS", &workers.to_string());
        let path = d.write("rampart.toml", text);
        let mut cmd = std::process::Command::new("taskset");
        cmd.args(["-c", cpus, BIN])
            .args(extra)
            .args(["run", "-c"])
            .arg(&path);
        let r = Rampart::start(cmd, port, d);
        assert_eq!(get(r.port, "/", &[]).text(), "ok");
        r
    };
    let one = start("0", 0, &[]);
    assert!(one.stderr().contains(", 1 worker)"), "{}", one.stderr());
    // One worker runs on the main thread: no worker pool.
    assert_eq!(threads_named(one.child.id(), "rampart-worker"), 0);
    drop(one);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpus >= 2 {
        let two = start("0,1", 0, &[]);
        assert!(two.stderr().contains(", 2 workers)"), "{}", two.stderr());
        assert_eq!(threads_named(two.child.id(), "rampart-worker"), 2);
    }
    // Configured, and the command line over the config.
    let three = start("0", 3, &[]);
    assert!(
        three.stderr().contains(", 3 workers)"),
        "{}",
        three.stderr()
    );
    assert_eq!(threads_named(three.child.id(), "rampart-worker"), 3);
    let four = start("0", 3, &["--workers", "4"]);
    assert!(four.stderr().contains(", 4 workers)"), "{}", four.stderr());
    assert_eq!(threads_named(four.child.id(), "rampart-worker"), 4);
}
