//! Content types from file extensions. nginx sends no charset unless configured; we add
//! `charset=utf-8` to the texty types, since browsers otherwise guess (and guess wrong).

use std::path::Path;

/// The `Content-Type` for a file name; `application/octet-stream` when unknown (nginx `default_type`).
pub fn content_type(path: &Path) -> String {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let mime = match ext.to_ascii_lowercase().as_str() {
        // mime_guess lags on a few common web types.
        "mjs" | "js" => "text/javascript",
        "wasm" => "application/wasm",
        "webmanifest" => "application/manifest+json",
        "md" => "text/markdown",
        "avif" => "image/avif",
        _ => mime_guess::from_ext(ext)
            .first_raw()
            .unwrap_or("application/octet-stream"),
    };
    if wants_charset(mime) {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_owned()
    }
}

fn wants_charset(mime: &str) -> bool {
    mime.starts_with("text/")
        || matches!(
            mime,
            "application/javascript" | "application/json" | "application/manifest+json"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let ct = |p: &str| content_type(Path::new(p));
        assert_eq!(ct("a.html"), "text/html; charset=utf-8");
        assert_eq!(ct("a.HTML"), "text/html; charset=utf-8");
        assert_eq!(ct("a.css"), "text/css; charset=utf-8");
        assert_eq!(ct("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(ct("a.json"), "application/json; charset=utf-8");
        assert_eq!(ct("a.txt"), "text/plain; charset=utf-8");
        assert_eq!(ct("a.png"), "image/png");
        assert_eq!(ct("a.svg"), "image/svg+xml");
        assert_eq!(ct("a.wasm"), "application/wasm");
        assert_eq!(ct("noext"), "application/octet-stream");
        assert_eq!(ct("a.unknownext"), "application/octet-stream");
    }
}
