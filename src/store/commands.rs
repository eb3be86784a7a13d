//! The strict-mode request path's read commands ([`Read`]), written straight into a batch's
//! buffer in RESP, the form Redis reads: no `String` key, no `redis::Cmd`.
//!
//! A strict request builds its `HMGET`s (or, cold, an `HGETALL`) on every request. Built the
//! usual way (`format!` or `String` keys, then `cmd().arg()`), one `HMGET` took about a
//! dozen allocations. A `Cmd` built in two allocations still cost about 600 instructions,
//! then as much again to be fingerprinted, moved into the batch and packed for sending.
//! Here what never changes (the command name, the argument count, the field names) is
//! written once as packed bytes, and only the key and the membership field are written
//! from their pieces (`<key_prefix>`, `cred:`, the prefix) (BENCHMARKS.md, "Instructions
//! per request").

use super::wire;
use redis::{Cmd, ErrorKind, RedisError, Value};

/// One argument written from up to three pieces back to back (a key is
/// `<key_prefix><kind><id>`, a membership field `org:<org>`); unused pieces are empty.
#[derive(Debug, Clone, Copy)]
pub(super) struct Joined<'a>(pub [&'a str; 3]);

impl<'a> Joined<'a> {
    /// An argument of one piece.
    pub(super) const fn one(piece: &'a str) -> Joined<'a> {
        Joined([piece, "", ""])
    }

    fn len(self) -> usize {
        self.0.iter().map(|piece| piece.len()).sum()
    }
}

/// `HMGET <key>` of five arguments, packed.
const HMGET_OF_5: &[u8] = b"*5\r\n$5\r\nHMGET\r\n";
/// `HMGET <key>` of four arguments, packed.
const HMGET_OF_4: &[u8] = b"*4\r\n$5\r\nHMGET\r\n";
/// `HGETALL <key>`, packed.
const HGETALL: &[u8] = b"*2\r\n$7\r\nHGETALL\r\n";
/// The fields of a credential that can change under a warm request (its stored hash and
/// whether, and when, it was revoked), packed.
const LIVENESS_FIELDS: &[u8] = b"$4\r\nhash\r\n$7\r\nrevoked\r\n$10\r\nrevoked_ms\r\n";
/// A user's `status` field, packed.
const STATUS_FIELD: &[u8] = b"$6\r\nstatus\r\n";

/// A piece of a command: bytes already packed, or an argument to pack.
#[derive(Debug, Clone, Copy)]
enum Part<'a> {
    Packed(&'static [u8]),
    Arg(Joined<'a>),
}

/// A read on one key, borrowing only its pieces' strings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Read<'a> {
    parts: [Part<'a>; 4],
    count: usize,
}

impl<'a> Read<'a> {
    /// `HMGET <key> hash revoked revoked_ms`: what can change about a known credential.
    pub(super) fn liveness(key: Joined<'a>) -> Read<'a> {
        let none = Part::Packed(b"");
        Read {
            parts: [
                Part::Packed(HMGET_OF_5),
                Part::Arg(key),
                Part::Packed(LIVENESS_FIELDS),
                none,
            ],
            count: 3,
        }
    }

    /// `HMGET <key> status org:<org>`: a user's status and role in `org`.
    pub(super) fn access(key: Joined<'a>, org: &'a str) -> Read<'a> {
        let membership = Joined([super::MEMBERSHIP_FIELD_PREFIX, org, ""]);
        Read {
            parts: [
                Part::Packed(HMGET_OF_4),
                Part::Arg(key),
                Part::Packed(STATUS_FIELD),
                Part::Arg(membership),
            ],
            count: 4,
        }
    }

    /// `HGETALL <key>`: a whole record.
    pub(super) fn record(key: Joined<'a>) -> Read<'a> {
        let none = Part::Packed(b"");
        Read {
            parts: [Part::Packed(HGETALL), Part::Arg(key), none, none],
            count: 2,
        }
    }

    fn parts(&self) -> &[Part<'a>] {
        &self.parts[..self.count]
    }

    /// Appends the command to `out` as Redis reads it (a RESP array of bulk strings).
    pub(super) fn write_resp(&self, out: &mut Vec<u8>) {
        let bytes: usize = self
            .parts()
            .iter()
            .map(|part| match part {
                Part::Packed(bytes) => bytes.len(),
                // `$<len>\r\n<arg>\r\n`, up to 9,999 bytes long.
                Part::Arg(arg) => 9 + arg.len(),
            })
            .sum();
        out.reserve(bytes);
        for part in self.parts() {
            match part {
                Part::Packed(bytes) => out.extend_from_slice(bytes),
                Part::Arg(arg) => {
                    out.push(b'$');
                    push_decimal(out, arg.len());
                    out.extend_from_slice(b"\r\n");
                    for piece in arg.0 {
                        out.extend_from_slice(piece.as_bytes());
                    }
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }

    /// The same command for redis-rs, where a batch is not used.
    ///
    /// # Errors
    /// Never in practice: the packed form is this module's own (see [`cmd_from_packed`]).
    pub(super) fn to_cmd(self) -> Result<Cmd, RedisError> {
        let mut packed = Vec::new();
        self.write_resp(&mut packed);
        cmd_from_packed(&packed)
    }
}

/// A redis-rs command from one packed command (an array of bulk strings, as [`Read`] writes
/// it).
///
/// # Errors
/// `packed` is not one such command.
pub(super) fn cmd_from_packed(packed: &[u8]) -> Result<Cmd, RedisError> {
    let malformed =
        || RedisError::from((ErrorKind::Client, "a packed command that does not parse"));
    let Some((Value::Array(args), used)) = wire::parse(packed, 0)? else {
        return Err(malformed());
    };
    if used != packed.len() {
        return Err(malformed());
    }
    let mut cmd = Cmd::with_capacity(args.len(), packed.len());
    for arg in args {
        match arg {
            Value::BulkString(bytes) => cmd.arg(bytes),
            _ => return Err(malformed()),
        };
    }
    Ok(cmd)
}

/// `n` in decimal ASCII.
fn push_decimal(out: &mut Vec<u8>, n: usize) {
    if n < 10 {
        // One digit: below 10.
        out.push(b'0' + n as u8);
        return;
    }
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n;
    while rest > 0 {
        at -= 1;
        // `rest % 10` is below 10.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `read` packed, checked to append and to be what redis-rs packs for `args`.
    fn packed_as(read: Read<'_>, args: &[&str]) -> Vec<u8> {
        let mut out = b"before".to_vec();
        read.write_resp(&mut out);
        assert!(out.starts_with(b"before"), "appends");
        let ours = out.split_off(6);
        let mut expected = redis::cmd(args[0]);
        for arg in &args[1..] {
            expected.arg(*arg);
        }
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&expected.get_packed_command())
        );
        let cmd = read.to_cmd().expect("parses back");
        assert_eq!(cmd.get_packed_command(), ours);
        ours
    }

    #[test]
    fn each_read_is_the_command_redis_rs_builds_from_strings() {
        packed_as(
            Read::liveness(Joined(["patgate:", "cred:", "pat_abcdef"])),
            &[
                "HMGET",
                "patgate:cred:pat_abcdef",
                "hash",
                "revoked",
                "revoked_ms",
            ],
        );
        packed_as(
            Read::access(Joined(["patgate:", "user:", "alice"]), "acme"),
            &["HMGET", "patgate:user:alice", "status", "org:acme"],
        );
        packed_as(
            Read::record(Joined(["p:", "cred:", "pat_abcdef"])),
            &["HGETALL", "p:cred:pat_abcdef"],
        );
    }

    #[test]
    fn empty_pieces_make_an_empty_argument_not_a_missing_one() {
        packed_as(
            Read::access(Joined(["", "user:", ""]), ""),
            &["HMGET", "user:", "status", "org:"],
        );
        packed_as(Read::record(Joined::one("")), &["HGETALL", ""]);
    }

    #[test]
    fn lengths_of_every_width_are_written_in_decimal() {
        for length in [0, 9, 10, 99, 100, 1000, 12_345] {
            let long = "x".repeat(length);
            packed_as(Read::record(Joined::one(&long)), &["HGETALL", &long]);
        }
        let mut out = Vec::new();
        push_decimal(&mut out, usize::MAX);
        assert_eq!(out, usize::MAX.to_string().as_bytes());
    }

    #[test]
    fn only_one_packed_command_of_bulk_strings_is_made_a_cmd() {
        assert!(cmd_from_packed(b"*1\r\n$4\r\nPING\r\n").is_ok());
        assert!(cmd_from_packed(b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n").is_err());
        assert!(cmd_from_packed(b"*1\r\n:4\r\n").is_err());
        assert!(cmd_from_packed(b"*1\r\n$4\r\nPI").is_err());
        assert!(cmd_from_packed(b"$4\r\nPING\r\n").is_err());
    }
}
