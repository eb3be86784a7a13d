use crate::support::{eventually, patgate_bin, Response};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

fn get(port: u16, path: &str, token: &str) -> Response {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to demo");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read");
    crate::support::parse_response(&raw)
}

#[test]
fn demo_curl_lines_give_the_promised_answers_and_ctrl_c_cleans_up() {
    let port = patgate::testkit::free_port().expect("port");
    let mut demo = Command::new(patgate_bin())
        .args(["demo", "--port", &port.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = demo.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut curl_lines = Vec::new();
    for line in lines.by_ref() {
        let line = line.expect("line");
        if line.contains("Ctrl-C stops") {
            break;
        }
        if line
            .trim_start()
            .starts_with("curl -s -H \"Authorization: Bearer")
        {
            curl_lines.push(line);
        }
    }
    assert_eq!(curl_lines.len(), 2, "{curl_lines:?}");
    let token = curl_lines[0]
        .split("Bearer ")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("token");
    let path = |line: &str| {
        line.rsplit(&format!("{port}"))
            .next()
            .expect("path")
            .to_string()
    };
    eventually(
        Duration::from_secs(20),
        "demo gateway",
        || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        String::new,
    );

    let allowed = get(port, &path(&curl_lines[0]), token);
    let echoed = allowed.echoed();
    assert_eq!(echoed.header("x-auth-user"), Some("alice"));
    assert_eq!(echoed.header("authorization"), None);
    get(port, &path(&curl_lines[1]), token).assert_denied(403, "insufficient_scope");

    Command::new("kill")
        .args(["-INT", &demo.id().to_string()])
        .status()
        .expect("kill -INT");
    let status = demo.wait().expect("wait");
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "gateway stopped"
    );
}
