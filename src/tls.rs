//! TLS material and how it is used: the downstream listener's certificate and key, an upstream
//! route's trust (SNI and CA bundle), and the CA bundle for `rediss://`.
//!
//! Everything is read and checked here when the conf loads (conf.rs calls in), so that a bad
//! file is a conf error naming the key, never a panic inside Pingora later (its rustls
//! listener panics on an unusable certificate, its connector on a CA certificate x509-parser
//! refuses) and never a verification that is quietly skipped. The material is then held in
//! memory: the listener is given the checked key through a resolver and does not read the
//! files again.
//!
//! One TLS stack, rustls with the *ring* provider: Pingora's `rustls` feature, redis-rs's
//! `tls-rustls` and this module all share it (see docs/DESIGN.md, "TLS").
//!
//! Security invariants enforced here: certificate verification is never off (every upstream
//! peer gets `verify_cert` and `verify_hostname` and a non-empty SNI, which Pingora's rustls
//! connector needs to verify at all); connections verified against one CA bundle are never
//! reused for a route trusting another (`group_key`); the private key is never printed
//! (`Debug` is written by hand).

use pingora::listeners::tls::TlsSettings;
use pingora::upstreams::peer::HttpPeer;
use pingora::utils::tls::{parse_x509, WrappedX509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The HTTPS listener (`tls_listen` + `tls:`): where, and the checked certificate and key.
pub struct DownstreamTls {
    /// The address it listens on.
    pub listen: SocketAddr,
    /// The certificate chain file (PEM), for messages.
    pub cert_file: PathBuf,
    /// The private key file (PEM), for messages; its content is never printed.
    pub key_file: PathBuf,
    /// The chain and the key, checked to match.
    certified: Arc<CertifiedKey>,
}

impl std::fmt::Debug for DownstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hand-written so that the key can never reach a log line.
        f.debug_struct("DownstreamTls")
            .field("listen", &self.listen)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish_non_exhaustive()
    }
}

impl DownstreamTls {
    /// Reads and checks `cert_file` (a PEM chain, leaf first) and `key_file` (a PEM private
    /// key: PKCS#8, PKCS#1 or SEC1), and that the key belongs to the leaf certificate.
    ///
    /// # Errors
    /// `(field, problem)`: `field` is `cert_file` or `key_file`, the one to fix.
    pub fn load(
        listen: SocketAddr,
        cert_file: &Path,
        key_file: &Path,
    ) -> Result<DownstreamTls, (&'static str, String)> {
        let chain = read_certificates(cert_file).map_err(|p| ("cert_file", p))?;
        let key = read_private_key(key_file).map_err(|p| ("key_file", p))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            (
                "key_file",
                format!(
                    "{} is not usable with the certificate in {}: {e}",
                    key_file.display(),
                    cert_file.display()
                ),
            )
        })?;
        Ok(DownstreamTls {
            listen,
            cert_file: cert_file.to_path_buf(),
            key_file: key_file.to_path_buf(),
            certified: Arc::new(certified),
        })
    }

    /// Pingora's settings for the listener: the checked key (through a resolver, so no file is
    /// read again), TLS 1.2 and 1.3, ALPN `h2` then `http/1.1`.
    ///
    /// # Errors
    /// Pingora refused the settings (its rustls backend does not today).
    pub fn settings(&self) -> pingora::Result<TlsSettings> {
        let cert = self.cert_file.to_string_lossy();
        let key = self.key_file.to_string_lossy();
        let mut settings = TlsSettings::intermediate(&cert, &key)?;
        settings.set_cert_resolver(Arc::new(SingleCertAndKey::from(Arc::clone(
            &self.certified,
        ))));
        settings.enable_h2();
        Ok(settings)
    }
}

/// A CA bundle: the PEM as read (for redis-rs) and each certificate (for Pingora).
#[derive(Clone)]
pub struct CaBundle {
    /// Where it came from, for messages.
    pub path: PathBuf,
    /// The file's bytes.
    pub pem: Vec<u8>,
    /// Each certificate, DER.
    der: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certificates", &self.der.len())
            .finish()
    }
}

impl CaBundle {
    /// Reads a PEM file of one or more CA certificates and checks that each is a certificate
    /// both x509-parser (Pingora) and webpki (rustls) accept as a trust anchor.
    ///
    /// # Errors
    /// The problem, naming the file.
    pub fn load(path: &Path) -> Result<CaBundle, String> {
        let pem = read(path)?;
        let der = certificates_in(path, &pem)?;
        let mut store = rustls::RootCertStore::empty();
        for (i, cert) in der.iter().enumerate() {
            let parsed = x509_parser::parse_x509_certificate(cert.as_ref()).is_ok();
            if !parsed || store.add(cert.clone()).is_err() {
                return Err(format!(
                    "{}: certificate {} is not a usable X.509 CA certificate",
                    path.display(),
                    i + 1
                ));
            }
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            pem,
            der,
        })
    }

    /// A stable 64-bit digest of the certificates, to keep connections verified against
    /// different bundles apart in Pingora's connection pool.
    fn digest(&self) -> u64 {
        let mut hasher = Sha256::new();
        for cert in &self.der {
            hasher.update((cert.len() as u64).to_be_bytes());
            hasher.update(cert.as_ref());
        }
        let sum = hasher.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&sum[..8]);
        // Never 0: that is the pool group of peers trusting the system roots.
        u64::from_be_bytes(first) | 1
    }
}

/// A route's `upstream_tls:`: the upstream speaks TLS and is verified.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// `sni:` when set: sent and verified instead of each upstream's own host name.
    pub sni: Option<String>,
    /// `ca_file:` when set; otherwise the system roots.
    pub ca: Option<CaBundle>,
    /// The bundle as Pingora wants it, built once.
    ca_for_peer: Option<Arc<[WrappedX509]>>,
    /// Connection pool group (0 with the system roots).
    group_key: u64,
}

impl UpstreamTls {
    /// Checks `sni` (a DNS name or an IP address) and loads `ca_file`.
    ///
    /// # Errors
    /// `(field, problem)`: `field` is `sni` or `ca_file`.
    pub fn new(
        sni: Option<String>,
        ca_file: Option<&Path>,
    ) -> Result<UpstreamTls, (&'static str, String)> {
        if let Some(name) = &sni {
            check_server_name(name).map_err(|p| ("sni", p))?;
        }
        let ca = ca_file
            .map(CaBundle::load)
            .transpose()
            .map_err(|p| ("ca_file", p))?;
        let ca_for_peer = ca.as_ref().map(|bundle| {
            bundle
                .der
                .iter()
                .map(|cert| WrappedX509::new(cert.as_ref().to_vec(), parse_x509))
                .collect::<Vec<_>>()
                .into()
        });
        let group_key = ca.as_ref().map_or(0, CaBundle::digest);
        Ok(UpstreamTls {
            sni,
            ca,
            ca_for_peer,
            group_key,
        })
    }

    /// The name sent as SNI and verified against the certificate for upstream `host`.
    pub fn server_name<'a>(&'a self, host: &'a str) -> &'a str {
        self.sni.as_deref().unwrap_or(host)
    }

    /// The Pingora peer for `addr` (written as `host` in the conf): TLS, SNI, the route's CA
    /// or the system roots, certificate and host name verified.
    pub fn peer(&self, addr: SocketAddr, host: &str) -> HttpPeer {
        let mut peer = HttpPeer::new(addr, true, self.server_name(host).to_string());
        peer.options.verify_cert = true;
        peer.options.verify_hostname = true;
        peer.options.ca = self.ca_for_peer.clone();
        peer.group_key = self.group_key;
        peer
    }
}

/// Checks that `name` can be sent as SNI and verified: a DNS name or an IP address.
///
/// # Errors
/// Why not.
pub fn check_server_name(name: &str) -> Result<(), String> {
    match ServerName::try_from(name) {
        Ok(_) if !name.is_empty() => Ok(()),
        _ => Err(format!("{name:?} is not a DNS name or an IP address")),
    }
}

/// The host part of an upstream written `host:port` (`[v6]:port` too), for the default SNI.
pub fn upstream_host(upstream: &str) -> &str {
    let host = upstream.rsplit_once(':').map_or(upstream, |(host, _)| host);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn certificates_in(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read(path)?;
    let certs = certificates_in(path, &pem)?;
    for (i, cert) in certs.iter().enumerate() {
        if x509_parser::parse_x509_certificate(cert.as_ref()).is_err() {
            return Err(format!(
                "{}: certificate {} is not valid X.509",
                path.display(),
                i + 1
            ));
        }
    }
    Ok(certs)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let pem = read(path)?;
    // The parser's error names the PEM problem, never the key's bytes.
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| format!("{} holds no usable PEM private key ({e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Material {
        dir: tempfile::TempDir,
    }

    impl Material {
        fn new() -> Material {
            let dir = tempfile::tempdir().expect("tempdir");
            let write = |name: &str, text: &str| {
                std::fs::write(dir.path().join(name), text).expect("write");
            };
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let ca_key = rcgen::KeyPair::generate().expect("key");
            let ca = params.self_signed(&ca_key).expect("ca");
            let leaf = |name: &str| {
                let key = rcgen::KeyPair::generate().expect("key");
                let params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
                let cert = params.signed_by(&key, &ca, &ca_key).expect("leaf");
                (cert.pem(), key.serialize_pem())
            };
            let (cert, key) = leaf("localhost");
            let (_, other_key) = leaf("other");
            write("ca.pem", &ca.pem());
            write("cert.pem", &cert);
            write("key.pem", &key);
            write("other-key.pem", &other_key);
            write("garbage.pem", "not pem\n");
            Material { dir }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }
    }

    fn listen() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 8443))
    }

    #[test]
    fn a_matching_certificate_and_key_load() {
        let m = Material::new();
        let tls =
            DownstreamTls::load(listen(), &m.path("cert.pem"), &m.path("key.pem")).expect("loads");
        assert!(!format!("{tls:?}").contains("PRIVATE"));
        assert!(tls.settings().is_ok());
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let m = Material::new();
        let (field, problem) =
            DownstreamTls::load(listen(), &m.path("cert.pem"), &m.path("other-key.pem"))
                .expect_err("mismatch");
        assert_eq!(field, "key_file");
        assert!(
            problem.contains("not usable with the certificate"),
            "{problem}"
        );
    }

    #[test]
    fn missing_and_garbage_files_name_the_field_and_file() {
        let m = Material::new();
        let (field, problem) =
            DownstreamTls::load(listen(), &m.path("nope.pem"), &m.path("key.pem"))
                .expect_err("missing");
        assert_eq!(field, "cert_file");
        assert!(problem.contains("cannot read") && problem.contains("nope.pem"));
        let (field, problem) =
            DownstreamTls::load(listen(), &m.path("cert.pem"), &m.path("garbage.pem"))
                .expect_err("garbage");
        assert_eq!(field, "key_file");
        assert!(problem.contains("no usable PEM private key"), "{problem}");
        let problem = CaBundle::load(&m.path("garbage.pem")).expect_err("garbage");
        assert!(problem.contains("holds no PEM certificate"), "{problem}");
        // A key file is not a CA bundle.
        assert!(CaBundle::load(&m.path("key.pem")).is_err());
    }

    #[test]
    fn upstream_peers_always_verify_with_a_name() {
        let m = Material::new();
        let tls = UpstreamTls::new(None, Some(&m.path("ca.pem"))).expect("valid");
        let peer = tls.peer(listen(), "localhost");
        assert_eq!(peer.sni, "localhost");
        assert!(peer.options.verify_cert && peer.options.verify_hostname);
        assert!(peer.options.ca.is_some());
        assert_ne!(peer.group_key, 0);
        let system = UpstreamTls::new(Some("api.internal".into()), None).expect("valid");
        let peer = system.peer(listen(), "10.0.0.1");
        assert_eq!(peer.sni, "api.internal");
        assert!(peer.options.ca.is_none());
        assert_eq!(peer.group_key, 0);
        let (field, _) = UpstreamTls::new(Some("bad name!".into()), None).expect_err("bad sni");
        assert_eq!(field, "sni");
    }

    #[test]
    fn upstream_hosts_are_split_from_their_ports() {
        assert_eq!(upstream_host("api.internal:443"), "api.internal");
        assert_eq!(upstream_host("127.0.0.1:8443"), "127.0.0.1");
        assert_eq!(upstream_host("[::1]:8443"), "::1");
    }
}
