//! [`Upstream`]: an HTTP/1.1 server on a free loopback port that answers 200 with a JSON echo
//! of the request it received (method, path, headers) and records every request, so a test
//! can assert what was forwarded, and that nothing was.
//!
//! Thread per connection, keep-alive, `Content-Length` and chunked request bodies.
//! [`Upstream::start_tls`] serves the same over TLS (rustls) with a given certificate, and
//! records the SNI of each completed handshake and how many handshakes failed.

use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// One request as the upstream received it.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// Method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers in arrival order, names as sent.
    pub headers: Vec<(String, String)>,
    /// Body length.
    pub body_len: usize,
}

impl Received {
    /// Every value of header `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`, if exactly one.
    pub fn header(&self, name: &str) -> Option<&str> {
        match self.header_all(name).as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

/// A running echo upstream.
pub struct Upstream {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stopping: Arc<AtomicBool>,
    /// TLS only: the SNI of every completed handshake (`None`: the client sent none).
    server_names: Arc<Mutex<Vec<Option<String>>>>,
    /// TLS only: handshakes that failed (e.g. the client refused the certificate).
    failed_handshakes: Arc<AtomicUsize>,
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves until dropped.
    ///
    /// # Errors
    /// The OS could not bind or spawn.
    pub fn start() -> std::io::Result<Upstream> {
        Upstream::listen(None)
    }

    /// As [`Upstream::start`], but over TLS 1.2/1.3 with `cert_pem` (chain, leaf first) and
    /// `key_pem`; HTTP/1.1 inside.
    ///
    /// # Errors
    /// The PEM does not hold a matching certificate and key, or as [`Upstream::start`].
    pub fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<Upstream> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(std::io::Error::other)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(std::io::Error::other)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(std::io::Error::other)?;
        Upstream::listen(Some(Arc::new(config)))
    }

    fn listen(tls: Option<Arc<rustls::ServerConfig>>) -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let server_names = Arc::new(Mutex::new(Vec::new()));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (log, stop) = (Arc::clone(&received), Arc::clone(&stopping));
        let (names, failed) = (Arc::clone(&server_names), Arc::clone(&failed_handshakes));
        std::thread::Builder::new()
            .name("echo-upstream".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let _ = stream.set_nodelay(true);
                    let log = Arc::clone(&log);
                    let tls = tls.clone();
                    let (names, failed) = (Arc::clone(&names), Arc::clone(&failed));
                    let _ = std::thread::Builder::new()
                        .name("echo-conn".into())
                        .spawn(move || match tls {
                            None => serve(stream, &log),
                            Some(config) => {
                                let Some(tls) = handshake(config, stream) else {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                    return;
                                };
                                let name = tls.conn.server_name().map(str::to_string);
                                if let Ok(mut names) = names.lock() {
                                    names.push(name);
                                }
                                serve(tls, &log);
                            }
                        });
                }
            })?;
        Ok(Upstream {
            addr,
            received,
            stopping,
            server_names,
            failed_handshakes,
        })
    }

    /// TLS only: the SNI of every completed handshake so far, in order.
    pub fn server_names(&self) -> Vec<Option<String>> {
        self.server_names
            .lock()
            .map(|n| n.clone())
            .unwrap_or_default()
    }

    /// TLS only: how many handshakes failed so far.
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::Relaxed)
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// How many requests arrived so far.
    pub fn count(&self) -> usize {
        self.received.lock().map(|r| r.len()).unwrap_or(0)
    }

    /// Forgets what was received so far (long runs such as the soak bench call it so that the
    /// record does not grow without bound).
    pub fn forget(&self) {
        if let Ok(mut log) = self.received.lock() {
            log.clear();
        }
    }

    /// The most recent request, if any.
    pub fn last(&self) -> Option<Received> {
        self.received.lock().ok().and_then(|r| r.last().cloned())
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

type TlsStream = rustls::StreamOwned<rustls::ServerConnection, TcpStream>;

/// Completes a server handshake within 5 s; `None` if it failed.
fn handshake(config: Arc<rustls::ServerConfig>, stream: TcpStream) -> Option<TlsStream> {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
    let conn = rustls::ServerConnection::new(config).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, stream);
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).ok()? == (0, 0) {
            return None;
        }
    }
    let _ = tls.sock.set_read_timeout(None);
    Some(tls)
}

fn serve<S: Read + Write>(stream: S, log: &Mutex<Vec<Received>>) {
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader) {
        let close = request
            .header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"));
        let body = serde_json::to_vec(&request).unwrap_or_default();
        if let Ok(mut log) = log.lock() {
            log.push(request);
        }
        let mut response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        )
        .into_bytes();
        response.extend_from_slice(&body);
        // One write: a head and a body written separately would meet Nagle's algorithm and
        // the proxy's delayed ACK, adding ~40 ms to every response.
        let writer = reader.get_mut();
        if writer.write_all(&response).is_err() || writer.flush().is_err() || close {
            return;
        }
    }
}

fn read_request(reader: &mut impl BufRead) -> Option<Received> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_string(), value.trim().to_string()));
    }
    let mut request = Received {
        method,
        path,
        headers,
        body_len: 0,
    };
    if let Some(length) = request
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        request.body_len = length;
    } else if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        request.body_len = read_chunked(reader)?;
    }
    Some(request)
}

fn read_chunked(reader: &mut impl BufRead) -> Option<usize> {
    let mut total = 0;
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).ok()?;
        let size = usize::from_str_radix(size_line.trim().split(';').next()?, 16).ok()?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk).ok()?;
        total += size;
        if size == 0 {
            return Some(total);
        }
    }
}
