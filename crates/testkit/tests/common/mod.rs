//! A plain SMTP client for the tests: lines written by hand, replies read
//! back with a time limit, TLS that accepts any certificate.

#![allow(dead_code)] // each test file uses a different part

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// How long a test waits for any one reply.
pub const REPLY_WAIT: Duration = Duration::from_secs(5);

pub struct Client<S> {
    io: BufReader<S>,
}

pub async fn connect(addr: SocketAddr) -> Client<TcpStream> {
    let tcp = timeout(REPLY_WAIT, TcpStream::connect(addr)).await.expect("connect timed out").expect("connect");
    Client { io: BufReader::new(tcp) }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Write raw text (the caller puts in the CRLFs).
    pub async fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes()).await;
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let io = self.io.get_mut();
        timeout(REPLY_WAIT, async {
            io.write_all(bytes).await?;
            io.flush().await
        })
        .await
        .expect("write timed out")
        .expect("write");
    }

    /// Write and ignore errors: the server may already have closed.
    pub async fn send_lossy(&mut self, text: &str) {
        let io = self.io.get_mut();
        let _ = timeout(REPLY_WAIT, io.write_all(text.as_bytes())).await;
    }

    /// One raw line, with its CRLF.
    pub async fn read_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.io.read_line(&mut line).await?;
        Ok(line)
    }

    /// One whole reply: the code and the text of its lines, joined by `\n`.
    pub async fn reply(&mut self) -> (u16, String) {
        let mut code = None;
        let mut text = Vec::new();
        loop {
            let line = timeout(REPLY_WAIT, self.read_line()).await.expect("no reply in time").expect("read");
            assert!(line.ends_with("\r\n"), "reply line not ended by CRLF: {line:?}");
            let line = line.trim_end_matches("\r\n");
            let this: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or_else(|| panic!("bad reply {line:?}"));
            assert_eq!(*code.get_or_insert(this), this, "reply code changed mid-reply: {line:?}");
            text.push(line.get(4..).unwrap_or("").to_string());
            match line.as_bytes().get(3) {
                Some(b'-') => continue,
                None | Some(b' ') => return (this, text.join("\n")),
                Some(_) => panic!("bad reply separator: {line:?}"),
            }
        }
    }

    /// Send one command line and read its reply.
    pub async fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(&format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Send one command line, check the reply code, return the text.
    pub async fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line).await;
        assert_eq!(got, code, "{line} got {got} {text}");
        text
    }

    /// Read the greeting and say EHLO; returns the EHLO keywords.
    pub async fn hello(&mut self) -> Vec<String> {
        assert_eq!(self.reply().await, (220, "sim ESMTP".to_string()));
        self.ehlo().await
    }

    pub async fn ehlo(&mut self) -> Vec<String> {
        let text = self.expect("EHLO client.test", 250).await;
        text.lines().skip(1).map(String::from).collect()
    }

    /// Whether the server closed the connection (an end of input or a reset)
    /// without sending anything more.
    pub async fn closed(&mut self) -> bool {
        let mut byte = [0u8; 1];
        matches!(timeout(REPLY_WAIT, self.io.read(&mut byte)).await, Ok(Ok(0) | Err(_)))
    }

    /// Whether nothing at all arrives within `wait`.
    pub async fn silent_for(&mut self, wait: Duration) -> bool {
        let mut byte = [0u8; 1];
        timeout(wait, self.io.read(&mut byte)).await.is_err()
    }
}

impl Client<TcpStream> {
    /// After a 220 to STARTTLS: the TLS handshake, trusting any certificate.
    pub async fn start_tls(self) -> Client<TlsStream<TcpStream>> {
        assert!(self.io.buffer().is_empty(), "the server sent something after its 220");
        let connector = TlsConnector::from(any_certificate_config());
        let name = ServerName::try_from("localhost").expect("server name");
        let tls = timeout(REPLY_WAIT, connector.connect(name, self.io.into_inner()))
            .await
            .expect("TLS handshake timed out")
            .expect("TLS handshake");
        Client { io: BufReader::new(tls) }
    }
}

fn any_certificate_config() -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Trusts any certificate, but still checks the handshake signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
