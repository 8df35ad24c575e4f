//! Arbitrary bytes as a client connection: hyper's HTTP/1 parser in front of Rampart's whole
//! request pipeline (admit, routing, static files, return, error pages) over an in-memory pipe.
//! No input may panic or hang.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rampart_app::Runtime;
use rampart_server::ConnInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn runtime() -> &'static (tokio::runtime::Runtime, Arc<Runtime>) {
    static RT: OnceLock<(tokio::runtime::Runtime, Arc<Runtime>)> = OnceLock::new();
    RT.get_or_init(|| {
        let dir = std::env::temp_dir().join("rampart-fuzz-root");
        let _ = std::fs::create_dir_all(dir.join("sub"));
        let _ = std::fs::write(dir.join("index.html"), "<h1>hi</h1>");
        let _ = std::fs::write(dir.join("a.txt"), "0123456789".repeat(100));
        let text = format!(
            r#"
[limits]
header_read_timeout = "1s"
[[server]]
listen = ["127.0.0.1:1"]
server_names = ["a.test", "*.w.test"]
error_pages = {{ "404" = "/index.html" }}
[[server.route]]
prefix = "/"
root = "{}"
browse = true
[[server.route]]
regex = "^/r/(.*)$"
return = {{ status = 302, location = "https://$host$request_uri" }}
[[server.route]]
exact = "/x"
methods = ["POST"]
return = {{ status = 200, body = "$request_method $uri $args" }}
"#,
            dir.display()
        );
        let cfg = rampart_config::parse_str(&text, std::path::Path::new("fuzz.toml")).expect("fuzz config");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let app = Arc::new(Runtime::new(cfg).expect("compile"));
        (rt, app)
    })
}

fuzz_target!(|data: &[u8]| {
    let (rt, app) = runtime();
    let app = app.clone();
    let input = data.to_vec();
    rt.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let conn = ConnInfo {
            peer: "127.0.0.1:9".parse().expect("addr"),
            local: "127.0.0.1:1".parse().expect("addr"),
            id: 1,
        };
        let svc = hyper::service::service_fn(move |req| {
            let snap = app.snapshot();
            async move { Ok::<_, std::convert::Infallible>(rampart_app::pipeline::handle(&snap, &conn, req).await) }
        });
        let serve = hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(server), svc);
        let drive = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            tokio::join!(serve, drive);
        })
        .await;
    });
});
