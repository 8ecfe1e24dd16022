//! The simulator's TLS side: a self-signed certificate made on first use.

use std::io;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A server configuration with a fresh self-signed certificate for
/// `localhost`, `sim.invalid`, `*.sim.test` (MX host names of the tests
/// that verify it) and 127.0.0.1 (ECDSA P-256, made with ring),
/// and that certificate in PEM (a client verifies with it as its CA).
pub(crate) fn self_signed_config() -> io::Result<(Arc<ServerConfig>, String)> {
    let names = ["localhost", "sim.invalid", "*.sim.test", "127.0.0.1"].map(String::from).to_vec();
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(vec![certified.cert.der().clone()], key)
        .map_err(io::Error::other)?;
    Ok((Arc::new(config), certified.cert.pem()))
}
