//! Fuzz target for the RESP2 reply parser of strict reads' own connection
//! (`patgate::store::parse_reply`, store/wire.rs): what a Redis server (or anything answering
//! on its port) sends back to every strict request.
//!
//! Properties checked on every input:
//! 1. it never panics, and a parsed reply takes at least one byte and no more than it has;
//! 2. what it parses, redis-rs's own parser parses to the same value from the same bytes (the
//!    parser replaced redis-rs's on this path and must read RESP2 exactly as it did);
//! 3. a reply is parsed from its own bytes alone, and every shorter prefix of them is
//!    incomplete (`None`), never an error or another reply: replies arrive in pieces.

#![no_main]

use libfuzzer_sys::fuzz_target;
use patgate::store::parse_reply;

fuzz_target!(|input: &[u8]| {
    let Ok(Some((value, used))) = parse_reply(input) else {
        return;
    };
    assert!(used > 0 && used <= input.len(), "took {used} of {}", input.len());
    let reply = &input[..used];
    let theirs = redis::parse_redis_value(reply).expect("redis-rs parses what we parsed");
    assert_eq!(value, theirs, "{:?}", String::from_utf8_lossy(reply));
    match parse_reply(reply) {
        Ok(Some((alone, alone_used))) => {
            assert_eq!((alone, alone_used), (value, used));
        }
        other => panic!("its own bytes alone gave {other:?}"),
    }
    if used <= 512 {
        for cut in 0..used {
            assert!(
                matches!(parse_reply(&reply[..cut]), Ok(None)),
                "a prefix of {cut} bytes was not incomplete: {:?}",
                parse_reply(&reply[..cut])
            );
        }
    }
});
