//! Directory listings (nginx `autoindex`): HTML with escaped names and percent-encoded links, or
//! JSON for programs. Dotfiles are left out unless hidden files are served, and names that are
//! not UTF-8 are left out because no request could name them.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};

/// One listed entry.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// File name (no trailing `/` for directories; see `is_dir`).
    pub name: String,
    /// Whether it is a directory (symlinks are followed).
    pub is_dir: bool,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: u64,
}

/// Characters escaped in a link's path segment (RFC 3986 pchar, minus what HTML/URLs would misread).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b'\\')
    .add(b'^')
    .add(b'|')
    .add(b'[')
    .add(b']')
    .add(b'\'');

/// Reads a directory: directories first, then files, each sorted by name (like nginx).
pub fn read(dir: &Path, show_hidden: bool) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for item in fs::read_dir(dir)? {
        let Ok(item) = item else { continue };
        let Ok(name) = item.file_name().into_string() else {
            continue;
        };
        if name.starts_with('.') && !show_hidden {
            continue;
        }
        // Follow symlinks for type and size; a dangling link is shown as what it is.
        let meta = match fs::metadata(item.path()) {
            Ok(m) => m,
            Err(_) => match item.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            },
        };
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        out.push(Entry {
            is_dir: meta.is_dir(),
            size: if meta.is_dir() { 0 } else { meta.len() },
            mtime,
            name,
        });
    }
    out.sort_by(|a, b| b.is_dir.cmp(&a.is_dir).then_with(|| a.name.cmp(&b.name)));
    Ok(out)
}

/// The JSON listing: `[{"name":…,"is_dir":…,"size":…,"mtime":…}]`.
pub fn json(entries: &[Entry]) -> Vec<u8> {
    serde_json::to_vec(entries).unwrap_or_else(|_| b"[]".to_vec())
}

/// The HTML listing for the request path `shown` (already decoded, ends with `/`).
pub fn html(shown: &str, entries: &[Entry]) -> String {
    let title = escape(shown);
    let mut s = String::with_capacity(512 + entries.len() * 160);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n<title>Index of {title}</title>\n\
         <style>body{{font-family:sans-serif}}td{{padding:0 1em}}td.s{{text-align:right}}</style>\n\
         </head>\n<body>\n<h1>Index of {title}</h1>\n<table>\n\
         <tr><th>Name</th><th>Last modified</th><th>Size</th></tr>\n"
    );
    if shown != "/" {
        s.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td class=\"s\">-</td></tr>\n");
    }
    for e in entries {
        let href = utf8_percent_encode(&e.name, SEGMENT);
        let slash = if e.is_dir { "/" } else { "" };
        let size = if e.is_dir {
            "-".to_owned()
        } else {
            e.size.to_string()
        };
        let _ = writeln!(
            s,
            "<tr><td><a href=\"{href}{slash}\">{}{slash}</a></td><td>{}</td><td class=\"s\">{size}</td></tr>",
            escape(&e.name),
            format_time(e.mtime),
        );
    }
    s.push_str("</table>\n</body>\n</html>\n");
    s
}

/// HTML-escapes text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `YYYY-MM-DD HH:MM` in UTC.
pub fn format_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(format_time(0), "1970-01-01 00:00");
        assert_eq!(format_time(1_700_000_000), "2023-11-14 22:13");
        assert_eq!(format_time(951_782_400), "2000-02-29 00:00");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        let e = Entry {
            name: "a b#?<.txt".into(),
            is_dir: false,
            size: 3,
            mtime: 0,
        };
        let h = html("/d/", &[e]);
        assert!(h.contains("href=\"a%20b%23%3F%3C.txt\""), "{h}");
        assert!(h.contains(">a b#?&lt;.txt</a>"), "{h}");
    }
}
