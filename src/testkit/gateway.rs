//! [`GatewayProcess`]: a `patgate serve` child process for the benches, started on a written
//! conf and waited for until its listener accepts; killed and reaped on drop.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running gateway process.
pub struct GatewayProcess {
    child: Child,
    /// The port its `listen` address uses on 127.0.0.1.
    pub port: u16,
}

impl GatewayProcess {
    /// Runs `binary -c conf serve` (logging errors only) and waits up to 20 s for 127.0.0.1:`port`.
    ///
    /// # Errors
    /// The process could not be spawned, or did not listen in time.
    pub fn start(binary: &Path, conf: &Path, port: u16) -> std::io::Result<GatewayProcess> {
        let child = Command::new(binary)
            .arg("-c")
            .arg(conf)
            .arg("serve")
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let gateway = GatewayProcess { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() >= deadline {
                return Err(std::io::Error::other(format!(
                    "gateway on port {port} did not start"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(gateway)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
