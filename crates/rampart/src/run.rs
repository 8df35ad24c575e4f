//! Wiring: load config, build the tokio runtime, start listeners and the admin API, and handle
//! signals (SIGHUP reload, SIGUSR1 reopen logs, SIGTERM/SIGINT graceful stop).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use rampart_app::{conn_limits, proxy_protocol_addrs, App, Runtime};
use rampart_config::{Config, ConfigErrors, EMBEDDED_DEFAULT};
use rampart_server::{ConnSettings, Listeners};
use tokio::signal::unix::{signal, SignalKind};

use crate::cli::{ProxyArgs, ServeArgs, WafArgs};

/// Where the config comes from, so a reload knows what to read again.
pub enum Source {
    /// A file on disk.
    File(PathBuf),
    /// The embedded default.
    Embedded,
    /// Built from quick-command flags (a reload keeps it).
    Generated(Box<Config>),
}

impl Source {
    fn load(&self) -> Result<Config, String> {
        match self {
            Source::File(p) => rampart_config::load_file(p).map_err(|e| e.to_string()),
            Source::Embedded => {
                rampart_config::parse_str(EMBEDDED_DEFAULT, Path::new("<embedded>"))
                    .map_err(|e| e.to_string())
            }
            Source::Generated(c) => Ok((**c).clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Embedded => "embedded default config".into(),
            Source::Generated(_) => "command line".into(),
        }
    }
}

fn init_tracing(cfg: &Config, cli_level: &Option<String>) {
    use tracing_subscriber::EnvFilter;
    let level = cli_level
        .clone()
        .unwrap_or_else(|| format!("{:?}", cfg.global.log_level).to_ascii_lowercase());
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    let _ = match cfg.global.log_format {
        rampart_config::DiagFormat::Json => b.json().try_init(),
        rampart_config::DiagFormat::Text => b.try_init(),
    };
}

/// `rampart serve DIR`: a config built from flags.
pub fn serve(a: ServeArgs, log: &Option<String>, workers: Option<usize>) -> anyhow::Result<()> {
    let dir = std::fs::canonicalize(&a.dir)
        .with_context(|| format!("cannot serve {}", a.dir.display()))?;
    if !dir.is_dir() {
        return Err(anyhow!("{} is not a directory", dir.display()));
    }
    let mut cfg = Config::default();
    cfg.admin.listen = a.admin.clone();
    let mut server = quick_server(&a.listen, &a.access_log, &a.waf)?;
    server.routes.push(rampart_config::Route {
        prefix: Some("/".into()),
        root: Some(dir),
        browse: a.browse,
        compress: Some(rampart_config::Compress {
            enabled: !a.no_compress,
            ..Default::default()
        }),
        ..Default::default()
    });
    cfg.servers.push(server);
    // Same checks as a file gets (listen addresses, directories…).
    let text = toml::to_string(&cfg).map_err(|e| anyhow!("internal: {e}"))?;
    rampart_config::parse_str(&text, Path::new("<command line>")).map_err(|e| anyhow!("{e}"))?;
    run(Source::Generated(Box::new(cfg)), log, workers)
}

/// The one server of a quick command: its listeners, access log (off unless asked) and WAF.
fn quick_server(
    listen: &[String],
    access_log: &Option<String>,
    waf: &WafArgs,
) -> anyhow::Result<rampart_config::Server> {
    let mut server = rampart_config::Server {
        listen: listen.to_vec(),
        default: true,
        waf: waf_from_flags(waf)?,
        ..Default::default()
    };
    server.access_log.path = access_log.clone().unwrap_or_else(|| "off".into());
    Ok(server)
}

/// The `--waf*` flags as a server's WAF settings.
fn waf_from_flags(w: &WafArgs) -> anyhow::Result<Option<rampart_config::Waf>> {
    let (on, rules, mode, log, log_format) = (
        w.on,
        &w.rules,
        w.mode.as_str(),
        &w.log,
        w.log_format.as_str(),
    );
    if !on && rules.is_empty() {
        if log.is_some() {
            return Err(anyhow!("--waf-log needs --waf or --waf-rules"));
        }
        return Ok(None);
    }
    let mode = match mode {
        "block" => rampart_config::WafMode::Block,
        "detect" => rampart_config::WafMode::Detect,
        other => return Err(anyhow!("unknown --waf-mode {other:?}: block or detect")),
    };
    let audit_format = match log_format {
        "json" => rampart_config::AuditFormat::Json,
        "modsec" => rampart_config::AuditFormat::Modsec,
        other => {
            return Err(anyhow!(
                "unknown --waf-log-format {other:?}: json or modsec"
            ))
        }
    };
    Ok(Some(rampart_config::Waf {
        mode,
        audit_format,
        rules: rules.clone(),
        audit_log: log.clone().unwrap_or_else(|| "off".into()),
        ..Default::default()
    }))
}

/// `rampart proxy --to …`: a reverse proxy built from flags.
pub fn proxy(a: ProxyArgs, log: &Option<String>, workers: Option<usize>) -> anyhow::Result<()> {
    use rampart_config::Balance;
    let balance = match a.balance.as_str() {
        "round_robin" => Balance::RoundRobin,
        "random" => Balance::Random,
        "power_of_two" => Balance::PowerOfTwo,
        "least_conn" => Balance::LeastConn,
        "least_time" => Balance::LeastTime,
        "ip_hash" => Balance::IpHash,
        other => {
            let all = [
                "round_robin",
                "random",
                "power_of_two",
                "least_conn",
                "least_time",
                "ip_hash",
            ];
            let hint = rampart_config::suggest(other, all)
                .map(|s| format!(" (did you mean {s}?)"))
                .unwrap_or_default();
            return Err(anyhow!(
                "unknown --balance {other:?}{hint}; one of {}",
                all.join(", ")
            ));
        }
    };
    let mut cfg = Config::default();
    cfg.admin.listen = a.admin.clone();
    let servers =
        a.to.iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| rampart_config::UpstreamServer {
                addr: t.trim().to_string(),
                weight: 1,
                ..Default::default()
            })
            .collect();
    cfg.upstreams.insert(
        "default".into(),
        rampart_config::Upstream {
            servers,
            balance,
            health_check: a
                .health_check
                .as_ref()
                .map(|p| rampart_config::HealthCheck {
                    path: p.clone(),
                    ..Default::default()
                }),
            ..Default::default()
        },
    );
    let mut server = quick_server(&a.listen, &a.access_log, &a.waf)?;
    server.routes.push(rampart_config::Route {
        prefix: Some("/".into()),
        proxy: Some("default".into()),
        // Bodies may be as large as the application allows; the WAF inspects up to its own
        // limit (SecRequestBodyLimit).
        max_body_size: Some(rampart_config::Size(1 << 30)),
        ..Default::default()
    });
    cfg.servers.push(server);
    let text = toml::to_string(&cfg).map_err(|e| anyhow!("internal: {e}"))?;
    rampart_config::parse_str(&text, Path::new("<command line>")).map_err(|e| anyhow!("{e}"))?;
    run(Source::Generated(Box::new(cfg)), log, workers)
}

/// `rampart check`.
pub fn check(path: &Path) -> ExitCode {
    match rampart_config::load_file(path) {
        Ok(cfg) => {
            let routes: usize = cfg.servers.iter().map(|s| s.routes.len()).sum();
            println!(
                "{}: ok ({} server(s), {} route(s))",
                path.display(),
                cfg.servers.len(),
                routes
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            if let rampart_config::LoadError::Invalid(ConfigErrors(list)) = &e {
                eprintln!("{} error(s) in {}", list.len(), path.display());
            }
            ExitCode::FAILURE
        }
    }
}

/// `rampart reload`: validate here, then ask the running instance through its admin API (which
/// reports the outcome) or, without one, SIGHUP to the pid in `global.pid_file`.
pub fn reload(path: &Path) -> ExitCode {
    let cfg = match rampart_config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}\nnot reloading: the running instance keeps its config");
            return ExitCode::FAILURE;
        }
    };
    if let Some(admin) = cfg.admin.listen.as_deref() {
        match admin_reload(admin) {
            Ok((true, body)) => {
                print!("{body}");
                return ExitCode::SUCCESS;
            }
            Ok((false, body)) => {
                eprint!("{body}");
                return ExitCode::FAILURE;
            }
            Err(e) if cfg.global.pid_file.is_none() => {
                eprintln!("cannot reach the admin listener at {admin}: {e}");
                return ExitCode::FAILURE;
            }
            Err(_) => {}
        }
    }
    let Some(pid_file) = &cfg.global.pid_file else {
        eprintln!("set admin.listen or global.pid_file in {} so `rampart reload` can find the running instance", path.display());
        return ExitCode::FAILURE;
    };
    let pid = match std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
    {
        Some(p) if p > 0 => p,
        _ => {
            eprintln!("cannot read a pid from {}", pid_file.display());
            return ExitCode::FAILURE;
        }
    };
    if send_sighup(pid) {
        println!("sent SIGHUP to {pid}");
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "cannot signal process {pid}: {}",
            std::io::Error::last_os_error()
        );
        ExitCode::FAILURE
    }
}

#[allow(unsafe_code)]
fn send_sighup(pid: i32) -> bool {
    // SAFETY: kill(2) takes plain integers and has no memory effects on this process.
    unsafe { libc::kill(pid, libc::SIGHUP) == 0 }
}

fn admin_reload(admin: &str) -> std::io::Result<(bool, String)> {
    let addr: SocketAddr = rampart_config::parse_listen(admin)
        .map_err(std::io::Error::other)
        .map(|a| {
            if a.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], a.port()))
            } else {
                a
            }
        })?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        s,
        "POST /reload HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    let ok = resp.starts_with("HTTP/1.1 200");
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((ok, body))
}

fn worker_count(cfg: &Config, cli: Option<usize>) -> usize {
    cli.filter(|n| *n > 0)
        .or((cfg.global.workers > 0).then_some(cfg.global.workers))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Loads the config, then serves until SIGTERM/SIGINT.
pub fn run(source: Source, log: &Option<String>, workers: Option<usize>) -> anyhow::Result<()> {
    let cfg = source.load().map_err(|e| anyhow!("{e}"))?;
    init_tracing(&cfg, log);
    let n = worker_count(&cfg, workers);
    // One worker: a current-thread runtime avoids the work-stealing machinery entirely.
    let rt = if n == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(n);
        b
    }
    .enable_all()
    // File reads that would block run here; bounded like nginx's aio thread pool (32) so a
    // burst of cold large files cannot grow hundreds of threads and their allocator arenas.
    .max_blocking_threads(32)
    .thread_name("rampart-worker")
    .build()
    .context("cannot start the async runtime")?;
    rt.block_on(serve_until_stopped(source, cfg, n))
}

struct Process {
    source: Source,
    app: Arc<Runtime>,
    listeners: Arc<Listeners<App>>,
}

impl Process {
    /// Reload: load + validate + compile, bind new listeners, then swap. Any failure keeps the
    /// running config and says why.
    fn reload(&self) -> Result<String, String> {
        let cfg = self
            .source
            .load()
            .inspect_err(|_| self.app.note_failed_reload())?;
        let limits = conn_limits(&cfg);
        let proxied = proxy_protocol_addrs(&cfg);
        let snap = self.app.prepare(cfg).map_err(|e| e.to_string())?;
        let addrs = snap.hosts.addrs();
        // Bind new addresses before anything changes (a bind error aborts the reload), install
        // the config that knows them, and only then accept on them and close removed ones.
        let bound = self
            .listeners
            .bind_new(&addrs)
            .inspect_err(|_| self.app.note_failed_reload())
            .map_err(|e| e.to_string())?;
        self.listeners
            .set_settings(ConnSettings::new(limits).with_proxy_protocol(proxied));
        let g = snap.generation;
        self.app.install(snap);
        self.listeners.activate(bound, &addrs);
        Ok(format!(
            "reloaded {} (generation {g})",
            self.source.describe()
        ))
    }
}

async fn serve_until_stopped(source: Source, cfg: Config, workers: usize) -> anyhow::Result<()> {
    let drain_timeout = cfg.global.drain_timeout.0;
    let pid_file = cfg.global.pid_file.clone();
    let admin_addr = cfg.admin.listen.clone();
    let limits = conn_limits(&cfg);
    let proxied = proxy_protocol_addrs(&cfg);
    let app = Arc::new(Runtime::new(cfg).map_err(|e| anyhow!("{e}"))?);
    app.spawn_tasks();
    let snap = app.snapshot();
    let listeners = Arc::new(Listeners::new(
        Arc::new(App(app.clone())),
        ConnSettings::new(limits).with_proxy_protocol(proxied),
    ));
    let addrs = snap.hosts.addrs();
    listeners.sync(&addrs)?;
    let process = Arc::new(Process {
        source,
        app: app.clone(),
        listeners: listeners.clone(),
    });

    let admin = match &admin_addr {
        Some(a) => {
            let addr = rampart_config::parse_listen(a).map_err(|e| anyhow!(e))?;
            let l2 = listeners.clone();
            let p2 = process.clone();
            let svc = rampart_admin::Admin::new(
                app.clone(),
                Arc::new(move || l2.open_connections()),
                Arc::new(move || {
                    let r = p2.reload();
                    match &r {
                        Ok(m) => tracing::info!("{m}"),
                        Err(e) => tracing::error!("reload refused, old config kept:\n{e}"),
                    }
                    r
                }),
            );
            let admin = Listeners::new(Arc::new(svc), ConnSettings::new(limits));
            admin.sync(&[addr])?;
            Some(admin)
        }
        None => None,
    };
    if let Some(p) = &pid_file {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write pid file {}", p.display()))?;
    }
    let mut urls: Vec<String> = addrs.iter().map(|a| format!("http://{a}")).collect();
    urls.sort();
    eprintln!(
        "rampart {} listening on {} ({}, {} worker{}){}",
        env!("CARGO_PKG_VERSION"),
        urls.join(", "),
        process.source.describe(),
        workers,
        if workers == 1 { "" } else { "s" },
        admin_addr
            .map(|a| format!("; admin on http://{a}"))
            .unwrap_or_default()
    );

    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let p = process.clone();
                // Parsing a large config must not stall request handling on this thread.
                let r = tokio::task::spawn_blocking(move || p.reload()).await;
                match r {
                    Ok(Ok(m)) => tracing::info!("{m}"),
                    Ok(Err(e)) => tracing::error!("reload refused, old config kept:\n{e}"),
                    Err(e) => tracing::error!("reload task failed: {e}"),
                }
            }
            _ = usr1.recv() => {
                app.shared.logs.reopen_all();
                tracing::info!("access logs reopened");
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!(timeout = ?drain_timeout, "stopping: finishing in-flight requests");
    if let Some(a) = &admin {
        a.sync(&[]).ok();
    }
    let left = listeners.drain(drain_timeout).await;
    if left > 0 {
        tracing::warn!(
            connections = left,
            "drain timeout reached; closing the rest"
        );
    }
    app.shared.logs.flush_all();
    if let Some(p) = &pid_file {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}
