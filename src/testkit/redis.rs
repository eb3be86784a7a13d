//! [`RedisServer`]: a private `redis-server` on a free loopback port with its own temp dir,
//! killed and reaped on drop. Never touches a Redis it did not start.
//!
//! The binary is `$PATGATE_REDIS_BIN` or `redis-server`. Fault helpers for tests: `stop()`
//! (SIGSTOP), `resume()` (SIGCONT), `kill()`, `restart()`. [`RedisServer::start_tls`] serves
//! TLS only (`--port 0 --tls-port`), with certificates the caller made, for `rediss://`;
//! [`RedisServer::start_tls_with_args`] does so for cluster nodes and Sentinels too.
//! [`RedisServer::start_with_password_and_args`] requires a password (`requirepass`, and
//! `masterauth` for a replica), which its URLs and connections carry.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Why a private Redis could not be started.
#[derive(Debug, thiserror::Error)]
pub enum RedisStartError {
    /// `redis-server` is not installed.
    #[error("redis-server not found ({0}); install it with `apt-get install redis-server` (the README's commands do this)")]
    Missing(String),
    /// Some other I/O failure.
    #[error("cannot start redis-server")]
    Io(#[from] std::io::Error),
    /// It started but never answered PING; the log is attached.
    #[error("redis-server on port {port} did not answer within 10 s; log:\n{log}")]
    NotReady {
        /// Its port.
        port: u16,
        /// Its log file's content.
        log: String,
    },
}

/// The files of a TLS-only server: its certificate chain and key, and the CA that issued
/// them (clients are not asked for certificates).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server certificate (PEM); must name 127.0.0.1 (IP SAN) for `url()` to verify.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
    /// The CA bundle (PEM) a client trusts.
    pub ca_file: PathBuf,
}

/// A running private redis-server.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    tls: Option<TlsFiles>,
    /// `requirepass` (and `masterauth`), if any.
    password: Option<String>,
    /// Arguments before the standard ones (a config file must come first).
    leading: Vec<OsString>,
    /// Arguments after the standard ones (cluster mode, `--replicaof`, `--sentinel`).
    trailing: Vec<OsString>,
}

/// The arguments [`RedisServer::start_with_args`] adds: (before, after) the standard ones.
pub type ExtraArgs = (Vec<OsString>, Vec<OsString>);

impl RedisServer {
    /// Starts redis-server on a free port and waits until it answers PING.
    ///
    /// # Errors
    /// [`RedisStartError`]: missing binary, spawn failure, or not ready in 10 s.
    pub fn start() -> Result<RedisServer, RedisStartError> {
        RedisServer::start_with(None)
    }

    /// As [`RedisServer::start`], but speaking only TLS on its port, with `files`; ready
    /// once a TLS PING trusting `files.ca_file` answers.
    ///
    /// # Errors
    /// As [`RedisServer::start`] (a redis-server built without TLS never gets ready).
    pub fn start_tls(files: TlsFiles) -> Result<RedisServer, RedisStartError> {
        RedisServer::start_with(Some(files))
    }

    /// As [`RedisServer::start`], with extra arguments made by `args` from the server's own
    /// temp dir and port (it may write files there, e.g. a `sentinel.conf` to pass first).
    /// Used by [`super::cluster`] and [`super::sentinel`].
    ///
    /// # Errors
    /// As [`RedisServer::start`], or what `args` returns.
    pub fn start_with_args(
        args: impl FnOnce(&Path, u16) -> std::io::Result<ExtraArgs>,
    ) -> Result<RedisServer, RedisStartError> {
        RedisServer::start_inner(None, None, args)
    }

    /// As [`RedisServer::start_with_args`], requiring `password` from every client
    /// (`requirepass`) and giving it to the primary when replicating (`masterauth`). Its
    /// [`url`](RedisServer::url), [`node_url`](RedisServer::node_url) and
    /// [`connection`](RedisServer::connection) carry the password, as given (not
    /// percent-encoded: use URL-safe test passwords). It is also on the server's command line,
    /// visible to `ps`: for tests only.
    ///
    /// # Errors
    /// As [`RedisServer::start_with_args`].
    pub fn start_with_password_and_args(
        password: &str,
        args: impl FnOnce(&Path, u16) -> std::io::Result<ExtraArgs>,
    ) -> Result<RedisServer, RedisStartError> {
        RedisServer::start_inner(None, Some(password.to_string()), args)
    }

    /// As [`RedisServer::start_with_args`], but TLS only, as [`RedisServer::start_tls`]. The
    /// TLS arguments come after `args`' leading ones, so they also apply to a Sentinel whose
    /// config file leads; cluster or replication links over TLS are asked for by `args`
    /// (`--tls-cluster yes`, `--tls-replication yes`).
    ///
    /// # Errors
    /// As [`RedisServer::start_with_args`].
    pub fn start_tls_with_args(
        files: TlsFiles,
        args: impl FnOnce(&Path, u16) -> std::io::Result<ExtraArgs>,
    ) -> Result<RedisServer, RedisStartError> {
        RedisServer::start_inner(Some(files), None, args)
    }

    fn start_with(tls: Option<TlsFiles>) -> Result<RedisServer, RedisStartError> {
        RedisServer::start_inner(tls, None, |_, _| Ok((Vec::new(), Vec::new())))
    }

    fn start_inner(
        tls: Option<TlsFiles>,
        password: Option<String>,
        args: impl FnOnce(&Path, u16) -> std::io::Result<ExtraArgs>,
    ) -> Result<RedisServer, RedisStartError> {
        let dir = tempfile::Builder::new()
            .prefix("patgate-redis-")
            .tempdir()?;
        let port = super::free_port()?;
        let (leading, trailing) = args(dir.path(), port)?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
            tls,
            password,
            leading,
            trailing,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> Result<(), RedisStartError> {
        let binary = std::env::var("PATGATE_REDIS_BIN").unwrap_or_else(|_| "redis-server".into());
        let port = self.port.to_string();
        let mut ports = vec!["--port".into(), port.clone().into()];
        if let Some(tls) = &self.tls {
            ports = vec![
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.into(),
                "--tls-cert-file".into(),
                tls.cert_file.clone().into_os_string(),
                "--tls-key-file".into(),
                tls.key_file.clone().into_os_string(),
                "--tls-ca-cert-file".into(),
                tls.ca_file.clone().into_os_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
        }
        let child = Command::new(&binary)
            .args(&self.leading)
            .args(&ports)
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(["--enable-debug-command", "yes", "--daemonize", "no"])
            .args(self.password.iter().flat_map(|password| {
                [
                    "--requirepass",
                    password.as_str(),
                    "--masterauth",
                    password.as_str(),
                ]
            }))
            .args(&self.trailing)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => RedisStartError::Missing(binary.clone()),
                _ => RedisStartError::Io(e),
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&self) -> Result<(), RedisStartError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(RedisStartError::NotReady {
            port: self.port,
            log: self.log(),
        })
    }

    /// Whether the server answers PING within 200 ms (over TLS for a TLS server).
    pub fn ping(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        let password = self.password.as_deref();
        match &self.tls {
            None => ping_over(stream, password),
            Some(tls) => {
                tls_client(&tls.ca_file, stream).is_some_and(|stream| ping_over(stream, password))
            }
        }
    }

    /// Its process id (0 when it is not running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:<port>/0`, or `rediss://…` for a TLS server.
    pub fn url(&self) -> String {
        format!("{}/0", self.node_url())
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` for a TLS server; `redis://:<password>@…` for
    /// one that requires a password), without a database: how cluster seed nodes and
    /// Sentinels are written in a conf.
    pub fn node_url(&self) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let auth = self
            .password
            .as_ref()
            .map(|password| format!(":{password}@"))
            .unwrap_or_default();
        format!("{scheme}://{auth}127.0.0.1:{}", self.port)
    }

    /// A new blocking connection of the caller's own (over TLS trusting `ca_file` for a TLS
    /// server), for assertions and setup; connecting gives up after `timeout`.
    ///
    /// # Errors
    /// The CA file cannot be read, or the server does not answer in time.
    pub fn connection(&self, timeout: Duration) -> redis::RedisResult<redis::Connection> {
        let client = match &self.tls {
            None => redis::Client::open(self.node_url())?,
            Some(tls) => redis::Client::build_with_tls(
                self.node_url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(std::fs::read(&tls.ca_file)?),
                },
            )?,
        };
        client.get_connection_with_timeout(timeout)
    }

    /// Its temp dir (config and log files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn signal(&self, signal: &str) -> std::io::Result<()> {
        let Some(child) = &self.child else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if status.success() {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("kill {signal} failed")))
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    ///
    /// # Errors
    /// `kill` failed.
    pub fn stop(&self) -> std::io::Result<()> {
        self.signal("-STOP")
    }

    /// Undoes [`RedisServer::stop`] (SIGCONT).
    ///
    /// # Errors
    /// `kill` failed.
    pub fn resume(&self) -> std::io::Result<()> {
        self.signal("-CONT")
    }

    /// Kills the server and reaps it; the port becomes free.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = self.signal_child(&mut child);
        }
    }

    fn signal_child(&self, child: &mut Child) -> std::io::Result<()> {
        let _ = Command::new("kill")
            .args(["-CONT", &child.id().to_string()])
            .status();
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// Kills the server and starts a new, empty one on the same port.
    ///
    /// # Errors
    /// As [`RedisServer::start`].
    pub fn restart(&mut self) -> Result<(), RedisStartError> {
        self.kill();
        self.spawn()
    }
}

/// Sends `PING` (after `AUTH` with `password`) and checks for `+PONG`.
fn ping_over(mut stream: impl Read + Write, password: Option<&str>) -> bool {
    let mut request = Vec::new();
    let mut expected = Vec::new();
    if let Some(password) = password {
        request.extend_from_slice(
            format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n", password.len()).as_bytes(),
        );
        expected.extend_from_slice(b"+OK\r\n");
    }
    request.extend_from_slice(b"PING\r\n");
    expected.extend_from_slice(b"+PONG\r\n");
    if stream.write_all(&request).is_err() || stream.flush().is_err() {
        return false;
    }
    let mut reply = vec![0u8; expected.len()];
    stream.read_exact(&mut reply).is_ok() && reply == expected
}

/// A TLS client stream to 127.0.0.1 trusting only the CA in `ca_file`.
fn tls_client(
    ca_file: &std::path::Path,
    stream: TcpStream,
) -> Option<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    let pem = std::fs::read(ca_file).ok()?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.ok()?).ok()?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").ok()?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).ok()?;
    Some(rustls::StreamOwned::new(conn, stream))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `CLIENT KILL TYPE normal SKIPME yes` through `control`: closes every other client's
/// connection (a reset, as a restart would); how many were closed.
///
/// # Errors
/// `control` cannot reach the server.
pub fn kill_other_clients(control: &mut redis::Connection) -> redis::RedisResult<u64> {
    kill_other_clients_cmd().query(control)
}

/// The `CLIENT KILL` of [`kill_other_clients`], to put in a pipeline.
pub fn kill_other_clients_cmd() -> redis::Cmd {
    let mut cmd = redis::cmd("CLIENT");
    cmd.arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes");
    cmd
}
