//! The command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Rampart: web server, reverse proxy, load balancer, cache, WAF and API gateway in one binary.
///
/// With no command, runs ./rampart.toml if it exists, else an embedded default config (a welcome
/// page on 127.0.0.1:8080 and the admin listener on 127.0.0.1:9901).
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Diagnostic log level (error, warn, info, debug, trace); overrides the config.
    #[arg(long, global = true, env = "RAMPART_LOG")]
    pub log_level: Option<String>,
    /// Worker threads (default: the CPUs this process may run on); overrides the config.
    #[arg(long, global = true)]
    pub workers: Option<usize>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a directory as a static web server (no config file needed).
    Serve(ServeArgs),
    /// Reverse proxy / load balancer in front of servers (no config file needed).
    Proxy(ProxyArgs),
    /// Run with a config file.
    Run(ConfigArg),
    /// Validate a config file: print every error with file:line:column, exit 0 (valid) or 1.
    Check(ConfigArg),
    /// Tell the running instance to reload its config (validates locally first).
    Reload(ConfigArg),
    /// Print a shell completion script (e.g. `rampart completions bash > /etc/bash_completion.d/rampart`).
    Completions {
        /// Shell to generate for.
        shell: clap_complete::Shell,
    },
    /// Print the man page in roff (e.g. `rampart manpage > rampart.1; man ./rampart.1`).
    Manpage,
}

#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file.
    #[arg(short, long, default_value = "rampart.toml")]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Directory to serve.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Address to listen on (repeatable; IPv6 as [::1]:8080).
    #[arg(short, long = "listen", default_value = "127.0.0.1:8080")]
    pub listen: Vec<String>,
    /// Show directory listings.
    #[arg(long)]
    pub browse: bool,
    /// Do not compress responses on the fly.
    #[arg(long)]
    pub no_compress: bool,
    /// Access log: "stdout" or a file path (default: off for this quick command).
    #[arg(long)]
    pub access_log: Option<String>,
    /// Also start the admin listener (health, metrics) on this address.
    #[arg(long)]
    pub admin: Option<String>,
    /// WAF settings.
    #[command(flatten)]
    pub waf: WafArgs,
}

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// Upstream servers: http://host:port, host:port or unix:/path (comma-separated, repeatable).
    #[arg(long = "to", required = true, value_delimiter = ',')]
    pub to: Vec<String>,
    /// Address to listen on (repeatable; IPv6 as [::1]:8080).
    #[arg(short, long = "listen", default_value = "127.0.0.1:8080")]
    pub listen: Vec<String>,
    /// Balancing method: round_robin, random, power_of_two, least_conn, least_time, ip_hash.
    #[arg(long, default_value = "round_robin")]
    pub balance: String,
    /// Active HTTP health check path (e.g. /healthz); off by default.
    #[arg(long)]
    pub health_check: Option<String>,
    /// Access log: "stdout" or a file path (default: off for this quick command).
    #[arg(long)]
    pub access_log: Option<String>,
    /// Also start the admin listener (health, metrics) on this address.
    #[arg(long)]
    pub admin: Option<String>,
    /// WAF settings.
    #[command(flatten)]
    pub waf: WafArgs,
}

/// The `--waf*` flags shared by the quick commands.
#[derive(Debug, clap::Args)]
pub struct WafArgs {
    /// Protect with Rampart's built-in WAF policy (no rule files needed).
    #[arg(long = "waf")]
    pub on: bool,
    /// SecLang rule files or globs, loaded in order (e.g. crs-setup.conf, rules/*.conf);
    /// repeatable. Implies --waf.
    #[arg(long = "waf-rules")]
    pub rules: Vec<String>,
    /// WAF mode: block (deny what the rules deny) or detect (log only).
    #[arg(long = "waf-mode", default_value = "block")]
    pub mode: String,
    /// Audit log of matched rules (one line per logged match, with its id).
    #[arg(long = "waf-log")]
    pub log: Option<String>,
    /// Audit log format: json, or modsec (ModSecurity error-log lines).
    #[arg(long = "waf-log-format", default_value = "json")]
    pub log_format: String,
}
