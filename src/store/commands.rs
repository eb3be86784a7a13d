//! The strict-mode request path's read commands, each built in two allocations.
//!
//! A strict request builds its `HMGET`s (or, cold, an `HGETALL`) on every request. Built the
//! usual way (`format!` or `String` keys, then `cmd().arg()`), one `HMGET` took about a
//! dozen allocations: the key and the membership field as `String`s, then the command's
//! byte and argument buffers grown argument by argument. Here every argument is written
//! from its pieces (`<key_prefix>`, `cred:`, the prefix) straight into the command's byte
//! buffer, and both buffers are sized once: two allocations a command, whatever its length.

use redis::{Cmd, RedisWrite, ToRedisArgs};
use std::io::Write;

/// One argument written from several pieces back to back (a key is
/// `<key_prefix><kind><id>`, a membership field `org:<org>`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Joined<'a>(pub &'a [&'a str]);

impl Joined<'_> {
    fn len(self) -> usize {
        self.0.iter().map(|piece| piece.len()).sum()
    }
}

impl ToRedisArgs for Joined<'_> {
    fn write_redis_args<W: ?Sized + RedisWrite>(&self, out: &mut W) {
        let mut arg = out.writer_for_next_arg();
        for piece in self.0 {
            // The writer appends to the command's Vec<u8>, which cannot fail.
            let _ = arg.write_all(piece.as_bytes());
        }
    }
}

/// `HMGET <key> <fields>...`.
pub(super) fn hmget(key: Joined<'_>, fields: &[Joined<'_>]) -> Cmd {
    let bytes = "HMGET".len() + key.len() + fields.iter().map(|f| f.len()).sum::<usize>();
    let mut cmd = Cmd::with_capacity(2 + fields.len(), bytes);
    cmd.arg("HMGET").arg(key);
    for field in fields {
        cmd.arg(*field);
    }
    cmd
}

/// `HGETALL <key>`.
pub(super) fn hgetall(key: Joined<'_>) -> Cmd {
    let mut cmd = Cmd::with_capacity(2, "HGETALL".len() + key.len());
    cmd.arg("HGETALL").arg(key);
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hmget_is_the_same_command_as_one_built_from_strings() {
        let built = hmget(
            Joined(&["patgate:", "user:", "alice"]),
            &[Joined(&["status"]), Joined(&["org:", "acme"])],
        );
        let mut expected = redis::cmd("HMGET");
        expected
            .arg("patgate:user:alice")
            .arg("status")
            .arg("org:acme");
        assert_eq!(built.get_packed_command(), expected.get_packed_command());
    }

    #[test]
    fn an_hgetall_is_the_same_command_as_one_built_from_strings() {
        let built = hgetall(Joined(&["p:", "cred:", "pat_abcdef"]));
        let mut expected = redis::cmd("HGETALL");
        expected.arg("p:cred:pat_abcdef");
        assert_eq!(built.get_packed_command(), expected.get_packed_command());
    }

    #[test]
    fn empty_pieces_make_an_empty_argument_not_a_missing_one() {
        let built = hmget(Joined(&["", "user:", ""]), &[Joined(&[])]);
        let mut expected = redis::cmd("HMGET");
        expected.arg("user:").arg("");
        assert_eq!(built.get_packed_command(), expected.get_packed_command());
    }
}
