//! [`WireConnection`]: strict mode's read batches on one plain-TCP Redis, exchanged by the
//! flusher itself over a connection of its own, in RESP2, with a reply parser for what those
//! reads get back.
//!
//! Why: through redis-rs's multiplexed connection a pipeline travels through a send task, a
//! channel and a connection task that parses replies with a combinator parser. Under
//! callgrind that was about 8,400 instructions per strict request (BENCHMARKS.md,
//! "Instructions per request"): more than the reads themselves. Here the flusher that formed
//! a batch writes it and parses the replies on its own task: no task, channel or wake-up in
//! between, and one reusable buffer each way.
//!
//! Scope: `redis.url` with `redis://` on TCP, the usual deployment on a private network.
//! `rediss://`, a Unix socket, a cluster and Sentinel keep redis-rs's connection (batch.rs);
//! so do every other operation of the store (management, cold reads outside the batch,
//! last-used stamps) and tracked mode.
//!
//! The connection's life:
//! - dialled by the first batch that needs it (connect, then `AUTH` and `SELECT` as the URL
//!   says), within that batch's deadline;
//! - dropped after an I/O error, a reply that does not parse, or a batch that did not finish
//!   (its deadline passed: the late replies would otherwise be read as the next batch's). The
//!   batch fails (503 upstream of here); the next one dials anew. Nothing is retried: every
//!   read must be one Redis ran after its request started, and a retry would only hide a
//!   fault that the next request meets anyway;
//! - watched while idle ([`WireConnection::closed_while_idle`]), so that a close by the
//!   server (its idle `timeout`, `CLIENT KILL`, a restart) is noticed before a batch is
//!   written into a dead socket.

use crate::conf::{RedisConf, Topology};
use redis::{ConnectionAddr, IntoConnectionInfo, Pipeline, RedisError, Value};
use std::io;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How much room a read gets in the reply buffer at least (a batch's replies are usually a
/// few hundred bytes; an `HGETALL` of a record, a few KB).
const READ_CHUNK: usize = 16 * 1024;

/// How deeply arrays may nest in a reply (the store's reads get flat arrays).
const MAX_DEPTH: u8 = 4;

/// The most one batch's replies may take. A batch reads a few small hashes (a whole
/// credential record is under 2 KB), so more means something other than Redis is answering;
/// the exchange fails instead of buffering it.
const MAX_REPLY_BYTES: usize = 4 * 1024 * 1024;

/// The reply buffer's capacity kept between exchanges; a larger one is given back.
const KEPT_CAPACITY: usize = 64 * 1024;

/// Where the connection goes and what it says first (its `Debug` leaves the handshake out:
/// it holds the password).
#[derive(Clone)]
pub struct WireTarget {
    host: String,
    port: u16,
    /// `AUTH` and `SELECT` as the URL asks, packed (empty when it asks for neither).
    handshake: Vec<u8>,
    /// How many replies `handshake` gets.
    handshake_replies: usize,
}

impl std::fmt::Debug for WireTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("handshake_replies", &self.handshake_replies)
            .finish_non_exhaustive()
    }
}

impl WireTarget {
    /// The target for `conf` when its reads can take this path: one server on plain TCP.
    /// `None` otherwise (TLS, a Unix socket, a cluster, Sentinel, or a URL the crate refuses,
    /// which conf.rs has already refused).
    pub fn for_conf(conf: &RedisConf) -> Option<WireTarget> {
        let Topology::Single { url } = &conf.topology else {
            return None;
        };
        let info = url.as_str().into_connection_info().ok()?;
        let ConnectionAddr::Tcp(host, port) = info.addr() else {
            return None;
        };
        let settings = info.redis_settings();
        let mut handshake = Pipeline::new();
        if let Some(password) = settings.password() {
            let auth = handshake.cmd("AUTH");
            if let Some(username) = settings.username() {
                auth.arg(username);
            }
            auth.arg(password);
        }
        if settings.db() != 0 {
            handshake.cmd("SELECT").arg(settings.db());
        }
        Some(WireTarget {
            host: host.clone(),
            port: *port,
            handshake_replies: handshake.len(),
            handshake: handshake.get_packed_pipeline(),
        })
    }
}

/// The strict read batches' own connection (see the module docs). Used by one task at a
/// time (the flusher owns it).
pub struct WireConnection {
    target: WireTarget,
    stream: Option<TcpStream>,
    /// Set while an exchange runs: if its future is dropped half-way (its deadline), the
    /// connection is left mid-reply and must not be used again.
    busy: bool,
    input: Vec<u8>,
}

impl WireConnection {
    /// A connection to `target`, dialled by the first exchange.
    pub fn new(target: WireTarget) -> WireConnection {
        WireConnection {
            target,
            stream: None,
            busy: false,
            input: Vec::with_capacity(READ_CHUNK),
        }
    }

    /// Sends `packed` (`count` commands, as Redis reads them) and reads one reply per
    /// command. An error reply is returned as that command's `Value::ServerError`, as
    /// redis-rs returns it from a pipeline that ignores errors.
    ///
    /// # Errors
    /// Connecting, the handshake, writing or reading failed, or a reply did not parse; the
    /// connection has been dropped.
    pub async fn exchange(
        &mut self,
        packed: &[u8],
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        if std::mem::replace(&mut self.busy, true) {
            // The last exchange was given up half-way (see `busy`).
            self.stream = None;
        }
        let replied = self.send_and_read(packed, count).await;
        if replied.is_err() {
            self.stream = None;
        }
        self.busy = false;
        replied
    }

    /// Drops the connection, if one is open; whether there was one.
    pub fn disconnect(&mut self) -> bool {
        self.stream.take().is_some()
    }

    /// Completes once the idle connection has been closed by the server (or sent something
    /// nobody asked for), having dropped it; never completes while there is none. Safe to
    /// cancel.
    pub async fn closed_while_idle(&mut self) {
        let Some(stream) = &self.stream else {
            return std::future::pending().await;
        };
        let mut probe = [0u8; 64];
        loop {
            if stream.readable().await.is_err() {
                break;
            }
            match stream.try_read(&mut probe) {
                // Readiness left over from the last exchange: nothing to read after all.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // End of stream, an error, or bytes with no request: unusable either way.
                _ => break,
            }
        }
        self.stream = None;
    }

    async fn send_and_read(
        &mut self,
        packed: &[u8],
        replies: usize,
    ) -> Result<Vec<Value>, RedisError> {
        if self.stream.is_none() {
            self.stream = Some(self.dial().await?);
        }
        let Some(stream) = self.stream.as_mut() else {
            return Err(io::Error::from(io::ErrorKind::NotConnected).into());
        };
        stream.write_all(packed).await?;
        read_replies(stream, &mut self.input, replies).await
    }

    /// A new connection, past the handshake.
    async fn dial(&mut self) -> Result<TcpStream, RedisError> {
        let target = &self.target;
        let mut stream = TcpStream::connect((target.host.as_str(), target.port)).await?;
        stream.set_nodelay(true)?;
        if target.handshake_replies > 0 {
            stream.write_all(&target.handshake).await?;
            let replies =
                read_replies(&mut stream, &mut self.input, target.handshake_replies).await?;
            if let Some(refused) = replies.into_iter().find_map(|reply| match reply {
                Value::ServerError(e) => Some(e),
                _ => None,
            }) {
                return Err(refused.into());
            }
        }
        Ok(stream)
    }
}

/// Reads exactly `count` replies from `stream` into `values`, using `input` as the buffer.
async fn read_replies(
    stream: &mut TcpStream,
    input: &mut Vec<u8>,
    count: usize,
) -> Result<Vec<Value>, RedisError> {
    input.clear();
    // What an unusually large exchange (or a failed one) left is given back.
    input.shrink_to(KEPT_CAPACITY);
    let mut values = Vec::with_capacity(count);
    let mut parsed = 0;
    while values.len() < count {
        match parse(&input[parsed..], 0)? {
            Some((value, used)) => {
                values.push(value);
                parsed += used;
            }
            None => {
                if input.len() >= MAX_REPLY_BYTES {
                    return Err(protocol_error("replies larger than a batch's reads can be"));
                }
                if input.capacity() - input.len() < READ_CHUNK / 4 {
                    input.reserve(READ_CHUNK);
                }
                if stream.read_buf(input).await? == 0 {
                    return Err(io::Error::from(io::ErrorKind::UnexpectedEof).into());
                }
            }
        }
    }
    if parsed != input.len() {
        return Err(protocol_error("more bytes than the replies asked for"));
    }
    Ok(values)
}

/// A reply that does not parse: the connection is unusable (it is dropped), so it is counted
/// as a connection failure (`kind="connection"`), as redis-rs counts its own.
fn protocol_error(problem: &'static str) -> RedisError {
    io::Error::new(io::ErrorKind::InvalidData, problem).into()
}

/// One RESP2 reply from the start of `input`, and how many bytes it took; `None` while
/// `input` holds only part of it.
///
/// # Errors
/// `input` does not start with a well-formed RESP2 reply.
pub fn parse(input: &[u8], depth: u8) -> Result<Option<(Value, usize)>, RedisError> {
    let Some(kind) = input.first() else {
        return Ok(None);
    };
    let Some(line_end) = line_end(input)? else {
        return Ok(None);
    };
    // A reply that starts with its CRLF has no type byte.
    let line = input
        .get(1..line_end)
        .ok_or_else(|| protocol_error("a line with no reply type"))?;
    let after_line = line_end + 2;
    let value = match kind {
        b'+' if line == b"OK" => Value::Okay,
        b'+' => Value::SimpleString(
            String::from_utf8(line.to_vec())
                .map_err(|_| protocol_error("a simple string that is not UTF-8"))?,
        ),
        // Rare: let the crate classify the error reply as it does its own.
        b'-' => redis::parse_redis_value(&input[..after_line])?,
        b':' => Value::Int(parse_int(line)?),
        b'$' => {
            let length = parse_int(line)?;
            if length == -1 {
                return Ok(Some((Value::Nil, after_line)));
            }
            let length =
                usize::try_from(length).map_err(|_| protocol_error("a negative bulk length"))?;
            let end = after_line + length;
            if input.len() < end + 2 {
                return Ok(None);
            }
            if &input[end..end + 2] != b"\r\n" {
                return Err(protocol_error("a bulk string longer than its length"));
            }
            return Ok(Some((
                Value::BulkString(input[after_line..end].to_vec()),
                end + 2,
            )));
        }
        b'*' => {
            let count = parse_int(line)?;
            if count == -1 {
                return Ok(Some((Value::Nil, after_line)));
            }
            let count =
                usize::try_from(count).map_err(|_| protocol_error("a negative array length"))?;
            if depth >= MAX_DEPTH {
                return Err(protocol_error("arrays nested too deeply"));
            }
            // Each element takes at least 3 bytes, so a length beyond what has arrived
            // cannot make this allocate more than the input's size.
            let mut items = Vec::with_capacity(count.min(input.len() / 3));
            let mut at = after_line;
            for _ in 0..count {
                match parse(&input[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            return Ok(Some((Value::Array(items), at)));
        }
        _ => return Err(protocol_error("an unknown reply type")),
    };
    Ok(Some((value, after_line)))
}

/// Where the first line of `input` ends (the index of its `\r`); `None` if it has not
/// arrived yet.
fn line_end(input: &[u8]) -> Result<Option<usize>, RedisError> {
    let Some(cr) = input.iter().position(|&b| b == b'\r') else {
        return Ok(None);
    };
    match input.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr)),
        Some(_) => Err(protocol_error("a line not ended by CRLF")),
    }
}

/// A RESP integer: an optional `-` and 1 to 18 digits.
fn parse_int(digits: &[u8]) -> Result<i64, RedisError> {
    let (negative, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
        return Err(protocol_error("a malformed integer"));
    }
    let magnitude = digits
        .iter()
        .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
    Ok(if negative { -magnitude } else { magnitude })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn whole(input: &[u8]) -> Value {
        match parse(input, 0) {
            Ok(Some((value, used))) => {
                assert_eq!(used, input.len(), "{input:?}");
                value
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }

    #[test]
    fn every_reply_type_the_reads_get_parses_as_redis_rs_parses_it() {
        let replies: [&[u8]; 10] = [
            b"+OK\r\n",
            b"+PONG\r\n",
            b":42\r\n",
            b":-7\r\n",
            b"$5\r\nhello\r\n",
            b"$0\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*3\r\n$4\r\nhash\r\n$-1\r\n$2\r\n\r\n\r\n",
            b"*2\r\n*1\r\n:1\r\n*0\r\n",
        ];
        for reply in replies {
            let ours = whole(reply);
            let theirs = redis::parse_redis_value(reply).expect("redis-rs parses it");
            assert_eq!(ours, theirs, "{:?}", String::from_utf8_lossy(reply));
        }
        // A bulk string holding CR, LF and non-UTF-8 bytes is taken by its length.
        assert_eq!(
            whole(b"$4\r\n\r\n\xff\0\r\n"),
            Value::BulkString(b"\r\n\xff\0".to_vec())
        );
    }

    #[test]
    fn an_error_reply_is_the_error_redis_rs_makes_of_it() {
        let reply = b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
        let Value::ServerError(error) = whole(reply) else {
            panic!("not an error value");
        };
        assert_eq!(error.code(), "WRONGTYPE");
        // Inside an array, as a pipeline's reply could hold it.
        let mut nested = b"*2\r\n".to_vec();
        nested.extend_from_slice(reply);
        nested.extend_from_slice(b":1\r\n");
        let Value::Array(items) = whole(&nested) else {
            panic!("not an array");
        };
        assert!(matches!(items[0], Value::ServerError(_)));
        assert_eq!(items[1], Value::Int(1));
    }

    #[test]
    fn a_reply_cut_anywhere_waits_for_the_rest() {
        let reply: &[u8] = b"*3\r\n$4\r\nhash\r\n$-1\r\n*1\r\n$3\r\nabc\r\n";
        for cut in 0..reply.len() {
            assert!(
                matches!(parse(&reply[..cut], 0), Ok(None)),
                "cut at {cut}: {:?}",
                parse(&reply[..cut], 0)
            );
        }
        whole(reply);
        // Two replies back to back: the first is taken alone.
        let mut two = b":1\r\n".to_vec();
        two.extend_from_slice(reply);
        assert!(matches!(parse(&two, 0), Ok(Some((Value::Int(1), 4)))));
    }

    #[test]
    fn malformed_replies_are_refused_not_waited_for() {
        let bad: [&[u8]; 14] = [
            b"\r\n",
            b"\r\n:1\r\n",
            b"*1\r\n\r\n",
            b"?what\r\n",
            b"+OK\rX",
            b":\r\n",
            b":12a\r\n",
            b":1234567890123456789\r\n",
            b"$-2\r\n",
            b"$3\r\nabcd\r\n",
            b"*-2\r\n",
            b"$x\r\n",
            b"*1\r\n?\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ];
        for reply in bad {
            assert!(
                parse(reply, 0).is_err(),
                "{:?} was accepted",
                String::from_utf8_lossy(reply)
            );
        }
        // Refused as a broken connection (it is dropped), not as Redis's own error reply.
        assert!(parse(b"?\r\n", 0).is_err_and(|e| e.is_io_error()));
        // A huge announced length allocates nothing up front: it waits for the bytes.
        assert!(matches!(parse(b"*999999999999\r\n", 0), Ok(None)));
        assert!(matches!(parse(b"$999999999999\r\n", 0), Ok(None)));
    }

    #[test]
    fn no_short_input_makes_the_parser_panic_or_take_more_than_it_has() {
        // Every string of up to five bytes over the bytes RESP gives meaning to.
        const ALPHABET: &[u8] = b"*$:+-\r\n01?";
        let mut input = Vec::new();
        let mut count = 0;
        for length in 0..=5u32 {
            for mut n in 0..ALPHABET.len().pow(length) {
                input.clear();
                for _ in 0..length {
                    input.push(ALPHABET[n % ALPHABET.len()]);
                    n /= ALPHABET.len();
                }
                if let Ok(Some((_, used))) = parse(&input, 0) {
                    assert!(used <= input.len(), "{input:?} took {used}");
                }
                count += 1;
            }
        }
        assert_eq!(count, (0..=5).map(|l| ALPHABET.len().pow(l)).sum::<usize>());
    }

    fn conf(url: &str) -> RedisConf {
        let text = format!(
            "listen: 127.0.0.1:1\nredis: {{url: '{url}'}}\n\
             roles: [{{name: admin, permissions: ['*']}}]\n\
             routes: [{{name: r, path_prefix: /, upstream: '127.0.0.1:1'}}]\n"
        );
        crate::conf::Conf::parse(std::path::Path::new("t.yaml"), &text)
            .expect("conf")
            .redis
    }

    #[test]
    fn only_one_plain_tcp_server_takes_this_path_with_its_auth_and_database() {
        let plain = WireTarget::for_conf(&conf("redis://127.0.0.1:6390/0")).expect("plain");
        assert_eq!((plain.host.as_str(), plain.port), ("127.0.0.1", 6390));
        assert_eq!(plain.handshake_replies, 0);
        let full = WireTarget::for_conf(&conf("redis://gw:s3cret@10.0.0.5:6379/3")).expect("acl");
        assert_eq!(full.handshake_replies, 2);
        assert_eq!(
            String::from_utf8_lossy(&full.handshake),
            "*3\r\n$4\r\nAUTH\r\n$2\r\ngw\r\n$6\r\ns3cret\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"
        );
        let password = WireTarget::for_conf(&conf("redis://:pw@h:1")).expect("password only");
        assert_eq!(
            String::from_utf8_lossy(&password.handshake),
            "*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n"
        );
        assert!(WireTarget::for_conf(&conf("rediss://127.0.0.1:6390")).is_none());
    }

    async fn exchange(
        wire: &mut WireConnection,
        pipeline: &Pipeline,
    ) -> Result<Vec<Value>, RedisError> {
        wire.exchange(&pipeline.get_packed_pipeline(), pipeline.len())
            .await
    }

    /// A connection (not yet dialled) to the server `url` names.
    fn connection_to(url: &str) -> WireConnection {
        WireConnection::new(WireTarget::for_conf(&conf(url)).expect("one plain-TCP server"))
    }

    fn pipeline(commands: &[&[&str]]) -> Pipeline {
        let mut pipe = Pipeline::new();
        for args in commands {
            let cmd = pipe.cmd(args[0]);
            for arg in &args[1..] {
                cmd.arg(*arg);
            }
        }
        pipe
    }

    #[tokio::test]
    async fn it_authenticates_selects_the_database_and_reads_what_redis_holds() {
        use crate::testkit::redis::RedisServer;
        let redis = RedisServer::start_with_password_and_args("s3cret", |_, _| {
            Ok((Vec::new(), Vec::new()))
        })
        .unwrap_or_else(|e| panic!("{e}"));
        let url = format!("{}/2", redis.node_url());
        let mut wire = connection_to(&url);
        let replies = exchange(
            &mut wire,
            &pipeline(&[
                &["HSET", "k", "a", "1", "b", "2"],
                &["HMGET", "k", "a", "missing", "b"],
                &["GET", "k"],
            ]),
        )
        .await
        .expect("exchange");
        assert_eq!(replies[0], Value::Int(2));
        assert_eq!(
            replies[1],
            Value::Array(vec![
                Value::BulkString(b"1".to_vec()),
                Value::Nil,
                Value::BulkString(b"2".to_vec())
            ])
        );
        // An error reply is that command's, and the connection stays usable.
        assert!(matches!(&replies[2], Value::ServerError(e) if e.code() == "WRONGTYPE"));
        assert!(wire.stream.is_some());
        // The write went to database 2.
        let mut control = redis.connection(Duration::from_secs(5)).expect("control");
        let _: () = redis::cmd("SELECT")
            .arg(2)
            .query(&mut control)
            .expect("select");
        let a: String = redis::cmd("HGET")
            .arg("k")
            .arg("a")
            .query(&mut control)
            .expect("hget");
        assert_eq!(a, "1");

        // A wrong password fails the exchange and leaves no connection behind.
        let wrong = format!("redis://:wrong@127.0.0.1:{}/2", redis.port());
        let mut refused = connection_to(&wrong);
        let failed = exchange(&mut refused, &pipeline(&[&["PING"]])).await;
        assert!(failed.is_err(), "{failed:?}");
        assert!(refused.stream.is_none());
    }

    #[tokio::test]
    async fn an_idle_connection_the_server_closes_is_dropped_and_the_next_exchange_redials() {
        use crate::testkit::redis::RedisServer;
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let mut wire = connection_to(&redis.url());
        let ping = pipeline(&[&["PING"]]);
        assert_eq!(
            exchange(&mut wire, &ping).await.expect("ping"),
            [Value::SimpleString("PONG".into())]
        );
        let mut control = redis.connection(Duration::from_secs(5)).expect("control");
        let killed = crate::testkit::redis::kill_other_clients(&mut control).expect("CLIENT KILL");
        assert_eq!(killed, 1);
        tokio::time::timeout(Duration::from_secs(10), wire.closed_while_idle())
            .await
            .expect("the close is noticed");
        assert!(wire.stream.is_none());
        assert_eq!(
            exchange(&mut wire, &ping).await.expect("redialled"),
            [Value::SimpleString("PONG".into())]
        );

        // Readiness left over from an exchange is not taken for a close.
        let watched = tokio::time::timeout(Duration::from_millis(50), wire.closed_while_idle());
        assert!(
            watched.await.is_err(),
            "an open idle connection was dropped"
        );
        assert!(wire.stream.is_some());
    }

    #[tokio::test]
    async fn an_exchange_given_up_half_way_leaves_no_reply_for_the_next() {
        use crate::testkit::redis::RedisServer;
        let redis = RedisServer::start().unwrap_or_else(|e| panic!("{e}"));
        let mut wire = connection_to(&redis.url());
        let slow = pipeline(&[&["DEBUG", "SLEEP", "0.3"], &["ECHO", "late"]]);
        let given_up =
            tokio::time::timeout(Duration::from_millis(50), exchange(&mut wire, &slow)).await;
        assert!(given_up.is_err(), "answered within 50 ms: {given_up:?}");
        // Its replies are on their way on the old connection; this exchange must not read them.
        let echo = pipeline(&[&["ECHO", "mine"]]);
        assert_eq!(
            exchange(&mut wire, &echo).await.expect("echo"),
            [Value::BulkString(b"mine".to_vec())]
        );
    }
}
