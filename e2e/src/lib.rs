//! Helpers shared by the end-to-end tests (`tests/`) and the scale bench (`benches/scale`):
//! paths in the repository, free loopback ports, a tiny HTTP client for the controller's admin
//! server, and the HTTPRoute CRD to install. The scenarios themselves live in `tests/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The repository root (the workspace).
pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A tiny HTTP/1.1 GET (the admin server is plain HTTP on loopback): status code and body.
pub fn http_get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad HTTP answer: {buf:.80}"))?;
    let body = buf.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    Ok((code, body.to_string()))
}

/// The HTTPRoute CRD to install, and where it came from: the official Gateway API v1.6.1 CRD
/// from `../shared/crds` when this checkout sits in the project's workspace, else the one
/// generated from the `gateway-api` crate. A CRD in a `*.k8s.io` group needs the
/// `api-approved.kubernetes.io` annotation (the official one has it, the generated one does
/// not), so it is added when missing.
pub fn httproute_crd() -> Result<(CustomResourceDefinition, String)> {
    let official = repo_root().join("../shared/crds/gateway.networking.k8s.io_httproutes.yaml");
    let (mut crd, source) = if official.is_file() {
        let text = std::fs::read_to_string(&official)?;
        let crd: CustomResourceDefinition = serde_saphyr::from_str(&text)
            .with_context(|| format!("parsing {}", official.display()))?;
        (crd, format!("official CRD {}", official.display()))
    } else {
        (
            gateway_api::apis::standard::httproutes::HttpRoute::crd(),
            "CRD generated from the gateway-api crate".to_string(),
        )
    };
    crd.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .entry("api-approved.kubernetes.io".to_string())
        // The value the official v1.6.1 CRD carries.
        .or_insert_with(|| "https://github.com/kubernetes-sigs/gateway-api/pull/4530".to_string());
    Ok((crd, source))
}
