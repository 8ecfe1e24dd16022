//! Reply framing (RFC 5321 §4.2): lines, multi-line replies, enhanced codes,
//! limits, malformed input, every split of the input, and random bytes.

use facteur_smtp_proto::Reply;
use facteur_smtp_proto::client::{MAX_REPLY_LINE, MAX_REPLY_LINES, ReplyError, ReplyReader};

/// Every reply in `input` (fed at once), with errors in place.
fn parse_all(input: &[u8]) -> Vec<Result<Reply, ReplyError>> {
    parse_fed(&[input])
}

fn parse_fed(pieces: &[&[u8]]) -> Vec<Result<Reply, ReplyError>> {
    let mut reader = ReplyReader::default();
    let mut out = Vec::new();
    for piece in pieces {
        reader.feed(piece);
        loop {
            match reader.next_reply() {
                Ok(Some(reply)) => out.push(Ok(reply)),
                Ok(None) => break,
                Err(e) => out.push(Err(e)),
            }
        }
    }
    out
}

fn one(input: &str) -> Reply {
    let mut all = parse_all(input.as_bytes());
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0).expect("a reply")
}

fn reply(code: u16, enhanced: Option<(u8, u16, u16)>, lines: &[&str]) -> Reply {
    Reply { code, enhanced, lines: lines.iter().map(|l| l.to_string()).collect() }
}

#[test]
fn single_and_multi_line() {
    assert_eq!(one("220 mx.example ESMTP\r\n"), reply(220, None, &["mx.example ESMTP"]));
    assert_eq!(
        one("250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n"),
        reply(250, None, &["mx.example", "PIPELINING", "SIZE 100"])
    );
    // RFC 5321 §4.2: the text is optional; "250-" and a bare "250".
    assert_eq!(one("250-\r\n250\r\n"), reply(250, None, &["", ""]));
    assert_eq!(one("354 \r\n"), reply(354, None, &[""]));
    // Nothing yet without the line end.
    assert_eq!(parse_all(b"250 Ok"), vec![]);
    assert_eq!(parse_all(b"250-a\r\n250 b"), vec![]);
}

#[test]
fn bare_lf_is_taken() {
    // Leniency (docs/quirks.md): some servers end lines in LF alone.
    assert_eq!(one("250-a\n250-b\r\n250 c\n"), reply(250, None, &["a", "b", "c"]));
}

#[test]
fn enhanced_codes() {
    assert_eq!(one("250 2.1.0 Ok\r\n"), reply(250, Some((2, 1, 0)), &["Ok"]));
    assert_eq!(one("550 5.1.1\r\n"), reply(550, Some((5, 1, 1)), &[""]));
    assert_eq!(one("451 4.123.999 x\r\n"), reply(451, Some((4, 123, 999)), &["x"]));
    // Repeated on later lines: stripped; a different one is kept as text.
    assert_eq!(
        one("550-5.7.1 Blocked\r\n550-5.7.1 see https://x\r\n550 5.7.2 other\r\n"),
        reply(550, Some((5, 7, 1)), &["Blocked", "see https://x", "5.7.2 other"])
    );
    // Not enhanced codes: class that does not match, too many digits,
    // no space after, four parts, only on a later line.
    assert_eq!(one("250 5.1.1 x\r\n"), reply(250, None, &["5.1.1 x"]));
    assert_eq!(one("250 2.1234.0 x\r\n"), reply(250, None, &["2.1234.0 x"]));
    assert_eq!(one("250 2.1.0x\r\n"), reply(250, None, &["2.1.0x"]));
    assert_eq!(one("250 2.1.0.1 x\r\n"), reply(250, None, &["2.1.0.1 x"]));
    assert_eq!(one("250 2..0 x\r\n"), reply(250, None, &["2..0 x"]));
    assert_eq!(one("250-a\r\n250 2.0.0 b\r\n"), reply(250, None, &["a", "2.0.0 b"]));
    // Only the first space after the code goes.
    assert_eq!(one("250 2.0.0  two spaces\r\n"), reply(250, Some((2, 0, 0)), &[" two spaces"]));
}

#[test]
fn text_is_cleaned() {
    // Control characters become spaces, tabs stay, bad UTF-8 is replaced.
    assert_eq!(one("250 a\x00b\tc\x1bd\re\r\n"), reply(250, None, &["a b\tc d e"]));
    let r = parse_all(b"250 caf\xc3\xa9 \xff\r\n");
    assert_eq!(r, vec![Ok(reply(250, None, &["caf\u{e9} \u{fffd}"]))]);
}

#[test]
fn malformed_lines() {
    for bad in [
        "250x\r\n",
        "25\r\n",
        "\r\n",
        "abc Ok\r\n",
        "2a0 Ok\r\n",
        "199 Ok\r\n",
        "600 Ok\r\n",
        "260 Ok\r\n",
        " 250 Ok\r\n",
    ] {
        let all = parse_all(bad.as_bytes());
        assert!(matches!(all.as_slice(), [Err(ReplyError::Malformed(_))]), "{bad:?}: {all:?}");
    }
    let all = parse_all(b"250-a\r\n251 b\r\n");
    assert!(matches!(all.as_slice(), [Err(ReplyError::Malformed(m))] if m.contains("different codes")), "{all:?}");
    // The message escapes what it quotes.
    let all = parse_all(b"2\x1b[31m\r\n");
    let [Err(ReplyError::Malformed(m))] = all.as_slice() else { panic!("{all:?}") };
    assert!(!m.contains('\x1b'), "{m}");
}

#[test]
fn after_an_error_the_rest_of_that_reply_is_eaten() {
    let input = b"250-a\r\n251-b\r\n250-c\r\n250 d\r\n220 next\r\n";
    let all = parse_all(input);
    assert!(matches!(all[0], Err(ReplyError::Malformed(_))), "{all:?}");
    assert_eq!(all[1..], [Ok(reply(220, None, &["next"]))]);
    // A bad final line ends its reply at once.
    let all = parse_all(b"250-a\r\n25x b\r\n220 next\r\n");
    assert!(matches!(all[0], Err(ReplyError::Malformed(_))), "{all:?}");
    assert_eq!(all[1..], [Ok(reply(220, None, &["next"]))]);
}

#[test]
fn line_limit() {
    // Exactly MAX_REPLY_LINE octets with CRLF, then with a bare LF.
    let ok = format!("250 {}\r\n", "x".repeat(MAX_REPLY_LINE - 6));
    assert_eq!(parse_all(ok.as_bytes()).len(), 1);
    assert!(parse_all(ok.as_bytes())[0].is_ok());
    let ok = format!("250 {}\n", "x".repeat(MAX_REPLY_LINE - 5));
    assert!(parse_all(ok.as_bytes())[0].is_ok());
    // One more octet is too long, whole or fed in pieces.
    let long = format!("250 {}\r\n220 next\r\n", "x".repeat(MAX_REPLY_LINE - 5));
    let expected = vec![Err(ReplyError::TooLong), Ok(reply(220, None, &["next"]))];
    assert_eq!(parse_all(long.as_bytes()), expected);
    let pieces: Vec<&[u8]> = long.as_bytes().chunks(100).collect();
    assert_eq!(parse_fed(&pieces), expected);
}

#[test]
fn long_line_fails_before_its_end_and_is_eaten_as_it_arrives() {
    let mut reader = ReplyReader::default();
    reader.feed(b"250-");
    assert_eq!(reader.next_reply(), Ok(None));
    let junk = vec![b'x'; MAX_REPLY_LINE];
    reader.feed(&junk);
    assert_eq!(reader.next_reply(), Err(ReplyError::TooLong));
    // Megabytes of line are not kept.
    for _ in 0..100 {
        reader.feed(&junk);
        assert_eq!(reader.next_reply(), Ok(None));
        assert_eq!(reader.buffered(), 0);
    }
    // The line was a continuation: its reply is eaten too.
    reader.feed(b"\r\n250-more\r\n250 end\r\n221 bye\r\n");
    assert_eq!(reader.next_reply(), Ok(Some(reply(221, None, &["bye"]))));
    assert_eq!(reader.next_reply(), Ok(None));
}

#[test]
fn line_count_limit() {
    let mut input = String::new();
    for _ in 0..MAX_REPLY_LINES - 1 {
        input.push_str("250-x\r\n");
    }
    let fits = format!("{input}250 last\r\n");
    let all = parse_all(fits.as_bytes());
    assert!(matches!(&all[..], [Ok(r)] if r.lines.len() == MAX_REPLY_LINES));
    let over = format!("{input}250-x\r\n250 last\r\n220 next\r\n");
    assert_eq!(parse_all(over.as_bytes()), vec![Err(ReplyError::TooLong), Ok(reply(220, None, &["next"]))]);
}

const TRANSCRIPT: &[u8] = b"250-mx.example.net Hello\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n\
250-8BITMIME\n250 2.0.0 CHUNKING\r\n550-5.1.1 No such\r\n550 5.1.1 user\r\n354 go\r\n";

fn transcript_replies() -> Vec<Result<Reply, ReplyError>> {
    vec![
        Ok(reply(250, None, &["mx.example.net Hello", "PIPELINING", "SIZE 10240000", "8BITMIME", "2.0.0 CHUNKING"])),
        Ok(reply(550, Some((5, 1, 1)), &["No such", "user"])),
        Ok(reply(354, None, &["go"])),
    ]
}

#[test]
fn every_split_gives_the_same_replies() {
    let expected = transcript_replies();
    assert_eq!(parse_all(TRANSCRIPT), expected);
    for i in 0..=TRANSCRIPT.len() {
        let (a, b) = TRANSCRIPT.split_at(i);
        assert_eq!(parse_fed(&[a, b]), expected, "split at {i}");
        for j in (i..=TRANSCRIPT.len()).step_by(7) {
            let (b, c) = b.split_at(j - i);
            assert_eq!(parse_fed(&[a, b, c]), expected, "split at {i} and {j}");
        }
    }
    let bytes: Vec<&[u8]> = TRANSCRIPT.chunks(1).collect();
    assert_eq!(parse_fed(&bytes), expected, "byte by byte");
}

#[test]
fn printed_replies_read_back() {
    for r in [
        Reply::new(250, (2, 1, 0), "Ok"),
        Reply { code: 550, enhanced: Some((5, 7, 1)), lines: vec!["a".into(), "".into(), "c d".into()] },
        Reply { code: 250, enhanced: None, lines: vec!["mx".into(), "SIZE 1".into()] },
        Reply::plain(354, ""),
    ] {
        assert_eq!(parse_all(&r.to_bytes()), vec![Ok(r.clone())]);
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = fastrand::Rng::with_seed(0x9E37_79B9_7F4A_7C15);
    let (mut replies, mut errors) = (0, 0);
    for round in 0..4000 {
        let input = if round % 100 == 0 { noise(&mut rng, 9000) } else { reply_shaped(&mut rng) };
        let mut reader = ReplyReader::default();
        let mut rest = &input[..];
        let mut fed = Vec::new();
        while !rest.is_empty() {
            let (piece, tail) = rest.split_at(rng.usize(..rest.len()) + 1);
            rest = tail;
            reader.feed(piece);
            while let Some(result) = reader_step(&mut reader) {
                fed.push(result);
            }
        }
        errors += fed.iter().filter(|r| r.is_err()).count();
        for r in fed.into_iter().flatten() {
            replies += 1;
            assert!((200..=559).contains(&r.code), "{r:?}");
            assert!(!r.lines.is_empty() && r.lines.len() <= MAX_REPLY_LINES);
            assert!(r.lines.iter().all(|l| !l.chars().any(|c| c.is_control() && c != '\t')));
            // Round trip when the printed form fits the limits.
            let printed = r.to_bytes();
            if printed.split(|&b| b == b'\n').all(|l| l.len() < MAX_REPLY_LINE) {
                assert_eq!(parse_all(&printed), vec![Ok(r.clone())]);
            }
        }
        assert!(reader.buffered() <= MAX_REPLY_LINE, "buffer bounded: {}", reader.buffered());
    }
    eprintln!("{replies} replies, {errors} errors");
    // The inputs reach both paths often.
    assert!(replies > 1000 && errors > 1000, "{replies} replies, {errors} errors");
}

/// Up to `max` random octets.
fn noise(rng: &mut fastrand::Rng, max: usize) -> Vec<u8> {
    (0..rng.usize(..max)).map(|_| rng.u8(..)).collect()
}

/// Lines that mostly look like replies, with random damage: codes that
/// change mid-reply, odd separators, enhanced codes, bad UTF-8, bare CR/LF.
fn reply_shaped(rng: &mut fastrand::Rng) -> Vec<u8> {
    const CODES: &[&[u8]] = &[b"250", b"250", b"250", b"220", b"354", b"421", b"550", b"25", b"2x0", b"199"];
    const SEPS: &[&[u8]] = &[b" ", b" ", b"-", b"-", b"-", b"", b"x"];
    const TEXTS: &[&[u8]] = &[b"Ok", b"2.1.0 Ok", b"5.1.1 no", b"2.0.0", b"", b"caf\xc3\xa9", b"\xff\x00", b"a\rb"];
    const ENDS: &[&[u8]] = &[b"\r\n", b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b""];
    let mut out = Vec::new();
    for _ in 0..rng.usize(..12) {
        for part in [CODES, SEPS, TEXTS, ENDS] {
            out.extend_from_slice(part[rng.usize(..part.len())]);
        }
        if rng.usize(..30) == 0 {
            out.extend(noise(rng, 20));
        }
    }
    out
}

/// One `next_reply`: `None` when more bytes are needed.
fn reader_step(reader: &mut ReplyReader) -> Option<Result<Reply, ReplyError>> {
    reader.next_reply().transpose()
}
