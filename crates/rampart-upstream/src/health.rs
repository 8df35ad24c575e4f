//! Active health checks: one task per server, an HTTP GET or a TCP connect every `interval`;
//! `fall` failures in a row take the server out, `rise` passes bring it back. Tasks hold only a
//! weak reference, so they end when a reload drops the group.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::peer::Peer;
use crate::settings::{HealthSettings, Protocol, ProxyProtocol};
use crate::Upstream;

/// Most body bytes read from a health answer.
const MAX_BODY: usize = 64 << 10;

/// Starts checking every server of `up`.
pub(crate) fn spawn(up: &Arc<Upstream>, h: &HealthSettings) {
    for i in 0..up.peers().len() {
        let weak = Arc::downgrade(up);
        let h = h.clone();
        tokio::spawn(async move { check_loop(weak, i, h).await });
    }
}

async fn check_loop(up: Weak<Upstream>, index: usize, h: HealthSettings) {
    let (mut passes, mut fails) = (0u32, 0u32);
    // Stagger the first checks so many servers are not probed in one burst.
    let jitter = Duration::from_millis(fastrand::u64(0..=h.interval.as_millis().min(1000) as u64));
    tokio::time::sleep(jitter / 4).await;
    loop {
        let Some(group) = up.upgrade() else { return };
        let Some(peer) = group.peers().get(index).cloned() else {
            return;
        };
        let name = group.settings.name.clone();
        let pp = group.settings.proxy_protocol;
        drop(group);
        let result = tokio::time::timeout(h.timeout, probe(&peer, &h, pp))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(()) => {
                passes += 1;
                fails = 0;
                if passes >= h.rise && peer.set_health(true) {
                    tracing::info!(upstream = %name, server = %peer.label, "health check: server is up");
                }
            }
            Err(why) => {
                fails += 1;
                passes = 0;
                if fails >= h.fall && peer.set_health(false) {
                    tracing::warn!(upstream = %name, server = %peer.label, reason = %why, "health check: server is down");
                }
            }
        }
        tokio::time::sleep(h.interval).await;
    }
}

async fn probe(
    peer: &Arc<Peer>,
    h: &HealthSettings,
    proxy_protocol: Option<ProxyProtocol>,
) -> Result<(), String> {
    let mut stream = peer.open().await.map_err(|e| e.to_string())?;
    if let Some(v) = proxy_protocol {
        // A server expecting PROXY headers refuses connections without one; a check is the
        // proxy's own connection, which the spec's LOCAL / UNKNOWN form is for.
        use tokio::io::AsyncWriteExt;
        stream
            .write_all(&crate::proxy_header::encode_local(v))
            .await
            .map_err(|e| e.to_string())?;
    }
    let Some(path) = &h.http_path else {
        return Ok(());
    };
    let host = h.host.clone().unwrap_or_else(|| peer.label.clone());
    let resp = if peer.settings.protocol == Protocol::H2c {
        // An h2c server may speak nothing else: check it over HTTP/2 (`Host` becomes
        // `:authority`).
        let (mut tx, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let uri = format!("http://{host}{path}");
        let req = http::Request::get(uri.as_str())
            .version(http::Version::HTTP_2)
            .header(http::header::USER_AGENT, "rampart-health-check")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        tx.send_request(req).await.map_err(|e| e.to_string())?
    } else {
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::get(path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::USER_AGENT, "rampart-health-check")
            .header(http::header::CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        tx.send_request(req).await.map_err(|e| e.to_string())?
    };
    let status = resp.status().as_u16();
    if !h
        .expect_status
        .iter()
        .any(|(a, b)| (*a..=*b).contains(&status))
    {
        return Err(format!("status {status}"));
    }
    if let Some(want) = &h.expect_body {
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let found = body
            .windows(want.len().max(1))
            .any(|w| w == want.as_bytes());
        if !found {
            return Err(format!("body lacks {want:?}"));
        }
    }
    Ok(())
}
