//! Access logs: one line per finished request in nginx's `combined` format (plus the request id)
//! or JSON, written to stdout or a file.
//!
//! Lines are buffered and flushed when the buffer passes a few KiB or by a periodic tick (see
//! `control::Runtime::spawn_tasks`), so a busy server does one write per batch, not per request.
//! SIGUSR1 reopens files after rotation, as nginx does.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rampart_config::AccessLogFormat;

use crate::exchange::Exchange;
use crate::timefmt;

const FLUSH_AT: usize = 16 << 10;

enum Target {
    Stdout,
    File(PathBuf),
}

struct Writer {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
}

impl Writer {
    fn flush(&mut self) {
        if !self.buf.is_empty() {
            if let Err(e) = self.out.write_all(&self.buf).and_then(|_| self.out.flush()) {
                tracing::warn!(error = %e, "access log write failed; lines dropped");
            }
            self.buf.clear();
        }
    }
}

/// One access log destination.
pub struct AccessLog {
    format: AccessLogFormat,
    target: Target,
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = match &self.target {
            Target::Stdout => "stdout".to_string(),
            Target::File(p) => p.display().to_string(),
        };
        write!(f, "AccessLog({t}, {:?})", self.format)
    }
}

fn open_file(p: &PathBuf) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(p)
}

impl AccessLog {
    fn new(path: &str, format: AccessLogFormat) -> io::Result<AccessLog> {
        let (target, out): (Target, Box<dyn Write + Send>) = if path == "stdout" {
            (Target::Stdout, Box::new(io::stdout()))
        } else {
            let p = PathBuf::from(path);
            let f = open_file(&p)?;
            (Target::File(p), Box::new(f))
        };
        Ok(AccessLog {
            format,
            target,
            writer: Mutex::new(Writer {
                out,
                buf: Vec::with_capacity(FLUSH_AT + 1024),
            }),
        })
    }

    /// Records one finished request.
    pub fn record(&self, x: &Exchange, at: (&str, &str), status: u16, bytes: u64, took: Duration) {
        let mut line = String::with_capacity(256);
        match self.format {
            AccessLogFormat::Combined => combined(&mut line, x, status, bytes),
            AccessLogFormat::Json => json(&mut line, x, at, status, bytes, took),
        }
        line.push('\n');
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        w.buf.extend_from_slice(line.as_bytes());
        if w.buf.len() >= FLUSH_AT {
            w.flush();
        }
    }

    /// Writes out buffered lines.
    pub fn flush(&self) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .flush();
    }

    /// Reopens a file target (after log rotation).
    pub fn reopen(&self) -> io::Result<()> {
        if let Target::File(p) = &self.target {
            let f = open_file(p)?;
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            w.flush();
            w.out = Box::new(f);
        }
        Ok(())
    }
}

/// nginx-style escaping for quoted log fields: `"`, `\` and non-printable bytes become `\xHH`.
fn push_escaped(out: &mut String, bytes: &[u8]) {
    for &b in bytes {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\x{b:02X}"));
        } else {
            out.push(b as char);
        }
    }
}

fn combined(out: &mut String, x: &Exchange, status: u16, bytes: u64) {
    use std::fmt::Write as _;
    let _ = write!(out, "{} - - [", x.conn.peer.ip());
    timefmt::push_local(out);
    out.push_str("] \"");
    push_escaped(out, x.method.as_str().as_bytes());
    out.push(' ');
    push_escaped(out, x.uri.to_string().as_bytes());
    let _ = write!(out, " {:?}\" {status} {bytes} \"", x.version);
    push_escaped(
        out,
        x.referer.as_ref().map_or(b"-".as_slice(), |v| v.as_bytes()),
    );
    out.push_str("\" \"");
    push_escaped(
        out,
        x.user_agent
            .as_ref()
            .map_or(b"-".as_slice(), |v| v.as_bytes()),
    );
    out.push_str("\" \"");
    push_escaped(out, x.request_id.as_bytes());
    out.push('"');
}

fn json(out: &mut String, x: &Exchange, at: (&str, &str), status: u16, bytes: u64, took: Duration) {
    let mut time = String::new();
    timefmt::push_rfc3339(&mut time);
    let s = |v: &Option<http::HeaderValue>| {
        v.as_ref()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let mut v = serde_json::json!({
        "time": time,
        "remote_addr": x.conn.peer.ip().to_string(),
        "method": x.method.as_str(),
        "uri": x.uri.to_string(),
        "protocol": format!("{:?}", x.version),
        "host": x.host,
        "status": status,
        "bytes": bytes,
        "duration_ms": took.as_secs_f64() * 1000.0,
        "server": at.0,
        "route": at.1,
        "referer": s(&x.referer),
        "user_agent": s(&x.user_agent),
        "request_id": String::from_utf8_lossy(x.request_id.as_bytes()),
    });
    if let (Some(n), Some(o)) = (x.tunnel_received, v.as_object_mut()) {
        o.insert("bytes_received".into(), n.into());
    }
    out.push_str(&v.to_string());
}

/// All open access logs, shared across reloads so files are not reopened on every reload.
#[derive(Default)]
pub struct LogRegistry {
    sinks: Mutex<HashMap<(String, String), Arc<AccessLog>>>,
}

impl std::fmt::Debug for LogRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRegistry")
    }
}

impl LogRegistry {
    /// Opens (or reuses) a log; `"off"` gives `None`.
    pub fn open(&self, path: &str, format: AccessLogFormat) -> io::Result<Option<Arc<AccessLog>>> {
        if path == "off" {
            return Ok(None);
        }
        let key = (path.to_string(), format!("{format:?}"));
        let mut sinks = self.sinks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = sinks.get(&key) {
            return Ok(Some(s.clone()));
        }
        let s = Arc::new(AccessLog::new(path, format)?);
        sinks.insert(key, s.clone());
        Ok(Some(s))
    }

    /// Flushes every log.
    pub fn flush_all(&self) {
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for s in sinks {
            s.flush();
        }
    }

    /// Reopens every file log.
    pub fn reopen_all(&self) {
        let sinks: Vec<_> = self
            .sinks
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for s in sinks {
            if let Err(e) = s.reopen() {
                tracing::error!(log = ?s, error = %e, "cannot reopen access log");
            }
        }
    }
}
