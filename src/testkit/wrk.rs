//! [`Load`]: the `wrk` load generator (from apt) started pinned to a CPU, and its report read
//! back as a [`Report`]. Used by the benches that measure a real gateway process.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

/// One wrk run to start.
#[derive(Debug, Clone)]
pub struct Load {
    /// `taskset -c` CPU list.
    pub cpu: String,
    /// `nice -n` value.
    pub nice: i32,
    /// `-c` connections (always `-t1`).
    pub connections: u32,
    /// `-d` seconds.
    pub seconds: u32,
    /// The URL.
    pub url: String,
    /// `-H` headers.
    pub headers: Vec<String>,
    /// `-s` Lua script.
    pub script: Option<PathBuf>,
}

/// What wrk reported.
#[derive(Debug, Clone, Copy, Default)]
pub struct Report {
    /// `Requests/sec`.
    pub rps: f64,
    /// Total requests.
    pub requests: u64,
    /// 50th percentile latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Responses with a status >= 400 (wrk's "Non-2xx or 3xx").
    pub non_2xx: u64,
    /// Connect, read, write and timeout errors.
    pub socket_errors: u64,
}

impl Load {
    /// `connections` connections to `url` for `seconds` on `cpu`, nice 0, no header.
    pub fn new(cpu: &str, connections: u32, seconds: u32, url: &str) -> Load {
        Load {
            cpu: cpu.to_string(),
            nice: 0,
            connections,
            seconds,
            url: url.to_string(),
            headers: Vec::new(),
            script: None,
        }
    }

    /// Adds `-H header`.
    pub fn header(mut self, header: &str) -> Load {
        self.headers.push(header.to_string());
        self
    }

    /// Starts wrk (`nice -n N taskset -c CPU wrk -t1 -c.. -d.. --latency ...`).
    ///
    /// # Errors
    /// wrk, nice or taskset could not be started.
    pub fn spawn(&self) -> std::io::Result<Child> {
        let mut command = Command::new("nice");
        command.args(["-n", &self.nice.to_string(), "taskset", "-c", &self.cpu]);
        command.args(["wrk", "-t1", "-c", &self.connections.to_string()]);
        command.args(["-d", &format!("{}s", self.seconds), "--latency"]);
        for header in &self.headers {
            command.args(["-H", header]);
        }
        if let Some(script) = &self.script {
            command.arg("-s").arg(script);
        }
        command
            .arg(&self.url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
    }
}

/// Pins every thread of process `pid` to `cpu` (`taskset -a -p -c`).
///
/// # Panics
/// When taskset is missing or refuses (a bench cannot measure what it meant to).
pub fn pin(pid: u32, cpu: &str) {
    let pinned = Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("taskset (util-linux)");
    assert!(pinned.success(), "taskset failed for pid {pid}");
}

/// A bench's run length and repetitions: `DURATION` (seconds, default `seconds`) and `REPS`
/// (default `reps`) under `cargo bench`; one 1-second run under `cargo test --benches`, which
/// only checks that the harness works.
pub fn run_settings(seconds: u32, reps: usize) -> (u32, usize) {
    if !std::env::args().any(|a| a == "--bench") {
        return (1, 1);
    }
    let number = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim_end_matches('s').parse::<usize>().ok())
    };
    let seconds = number("DURATION").map_or(seconds, |s| u32::try_from(s).unwrap_or(seconds));
    (seconds, number("REPS").unwrap_or(reps))
}

/// Waits for a wrk started by [`Load::spawn`] and parses its report (zeros where a figure is
/// missing, so a failed run shows as no throughput).
pub fn finish(child: Child) -> Report {
    let Ok(output) = child.wait_with_output() else {
        return Report::default();
    };
    parse(&String::from_utf8_lossy(&output.stdout))
}

/// Parses wrk's `--latency` text report.
pub fn parse(text: &str) -> Report {
    let mut report = Report::default();
    for line in text.lines().map(str::trim) {
        let number = |rest: &str| rest.trim().parse().unwrap_or(0);
        if let Some(rest) = line.strip_prefix("Requests/sec:") {
            report.rps = rest.trim().parse().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("50%") {
            report.p50_ms = millis(rest.trim());
        } else if let Some(rest) = line.strip_prefix("99%") {
            report.p99_ms = millis(rest.trim());
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            report.non_2xx = number(rest);
        } else if let Some((count, _)) = line.split_once(" requests in ") {
            report.requests = number(count);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 1, write 0, timeout 0"
            report.socket_errors = rest
                .split(',')
                .filter_map(|part| part.split_whitespace().nth(1))
                .map(|n| n.parse::<u64>().unwrap_or(0))
                .sum();
        }
    }
    report
}

/// wrk's latency text (`812.00us`, `1.23ms`, `2.01s`) in milliseconds.
pub fn millis(text: &str) -> f64 {
    let split = text
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => value / 1e3,
        "ms" => value,
        "s" => value * 1e3,
        "m" => value * 60e3,
        _ => f64::NAN,
    }
}

/// The median (upper median for an even count; 0 for none).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_latency_report_is_read() {
        let text = "Running 1s test @ http://127.0.0.1:1/api\n  1 threads and 8 connections\n\
            \x20 Latency Distribution\n     50%  312.00us\n     75%  400.00us\n     90%  1.10ms\n     99%    2.50ms\n\
            \x20 20123 requests in 1.00s, 2.00MB read\n  Socket errors: connect 0, read 2, write 0, timeout 1\n\
            \x20 Non-2xx or 3xx responses: 7\nRequests/sec:  20100.50\nTransfer/sec:      2.00MB\n";
        let report = parse(text);
        assert_eq!(report.requests, 20123);
        assert!((report.rps - 20100.5).abs() < 1e-9);
        assert!((report.p50_ms - 0.312).abs() < 1e-9);
        assert!((report.p99_ms - 2.5).abs() < 1e-9);
        assert_eq!((report.non_2xx, report.socket_errors), (7, 3));
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert!(millis("nonsense").is_nan());
    }
}
