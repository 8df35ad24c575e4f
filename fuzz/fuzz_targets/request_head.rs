//! Arbitrary bytes as a client connection: Rampart's HTTP/1 server (request line, headers,
//! bodies) in front of its whole request pipeline (admit, routing, static files, return, error
//! pages) over a loopback connection.
//! No input may panic or hang.
#![no_main]
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use rampart_app::control::App;
use rampart_app::Runtime;
use rampart_server::{serve_connection, ConnInfo, ConnSettings};
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
        // A real loopback connection: the HTTP/1 server reads from socket halves.
        let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:0").await else { return };
        let Ok(addr) = listener.local_addr() else { return };
        let Ok(mut client) = tokio::net::TcpStream::connect(addr).await else { return };
        let Ok((server, peer)) = listener.accept().await else { return };
        let info = ConnInfo { peer, local: addr, id: 1 };
        let settings = ConnSettings::new(rampart_app::control::conn_limits(&app.snapshot().config));
        let serve = serve_connection(server, info, settings, Arc::new(App(app)));
        let drive = async move {
            let _ = client.write_all(&input).await;
            // End of input, as a client that half-closes: the server answers what it has read
            // and closes (a keep-alive connection would otherwise wait for more).
            let _ = client.shutdown().await;
            let mut sink = Vec::new();
            let _ = client.read_to_end(&mut sink).await;
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            tokio::select! { _ = serve => {}, _ = drive => {} }
        })
        .await;
    });
});
