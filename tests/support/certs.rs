//! A throwaway PKI made at run time with rcgen: a CA, and server certificates it issues, all
//! written into the caller's temp dir. No key is ever committed to the repository.

use std::path::{Path, PathBuf};

/// A certificate authority whose certificate is in `<dir>/<name>-ca.pem`.
pub struct Ca {
    name: String,
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

/// A certificate and its key, in PEM files.
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl Issued {
    pub fn cert_pem(&self) -> Vec<u8> {
        std::fs::read(&self.cert_file).expect("read cert")
    }

    pub fn key_pem(&self) -> Vec<u8> {
        std::fs::read(&self.key_file).expect("read key")
    }
}

impl Ca {
    /// A new CA called `name`, its certificate written into `dir`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("patgate test CA {name}"));
        let key = rcgen::KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("CA certificate");
        let ca = Ca {
            name: name.to_string(),
            dir: dir.to_path_buf(),
            cert,
            key,
        };
        std::fs::write(ca.ca_file(), ca.cert.pem()).expect("write CA");
        ca
    }

    /// The CA's certificate (PEM), what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join(format!("{}-ca.pem", self.name))
    }

    /// A server certificate for `names` (DNS names or IP addresses), as `<stem>.pem` and
    /// `<stem>-key.pem`.
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let key = rcgen::KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("server certificate");
        let issued = Issued {
            cert_file: self.dir.join(format!("{stem}.pem")),
            key_file: self.dir.join(format!("{stem}-key.pem")),
        };
        std::fs::write(&issued.cert_file, cert.pem()).expect("write cert");
        std::fs::write(&issued.key_file, key.serialize_pem()).expect("write key");
        issued
    }
}
