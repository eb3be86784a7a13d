//! [`Upstream`]: an HTTP/1.1 server on a free loopback port that answers 200 with a JSON echo
//! of the request it received (method, path, headers) and records every request, so a test
//! can assert what was forwarded, and that nothing was.
//!
//! Thread per connection, keep-alive, `Content-Length` and chunked request bodies.

use serde::Serialize;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
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
}

impl Upstream {
    /// Binds 127.0.0.1:0 and serves until dropped.
    ///
    /// # Errors
    /// The OS could not bind or spawn.
    pub fn start() -> std::io::Result<Upstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Vec::new()));
        let stopping = Arc::new(AtomicBool::new(false));
        let (log, stop) = (Arc::clone(&received), Arc::clone(&stopping));
        std::thread::Builder::new()
            .name("echo-upstream".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let log = Arc::clone(&log);
                    let _ = std::thread::Builder::new()
                        .name("echo-conn".into())
                        .spawn(move || serve(stream, &log));
                }
            })?;
        Ok(Upstream {
            addr,
            received,
            stopping,
        })
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

fn serve(stream: TcpStream, log: &Mutex<Vec<Received>>) {
    let _ = stream.set_nodelay(true);
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
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
        if writer.write_all(&response).is_err() || close {
            return;
        }
    }
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Received> {
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

fn read_chunked(reader: &mut BufReader<TcpStream>) -> Option<usize> {
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
